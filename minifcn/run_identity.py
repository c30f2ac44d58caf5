r"""Whether a checkpoint belongs to the run resuming it: its configuration, compared.

A run's configuration (:class:`minifcn.training_setup.TrainingSetup`'s ``config``) records
what makes it that run: the architecture and width, the batch size, the optimiser and its
options, the schedule and the iterations it spans, the augmentation, the seed, and a
fingerprint of the training and validation data (:func:`data_fingerprint`). A resume with
any of these changed is another run: its data order, schedule or shapes no longer continue
the saved ones. Where the difference is meant, the caller forces the resume.

Left out of the comparison: the device (a run moves between CPU and GPU freely), the path
of the VGG16 file the run started from (the checkpoint's weights replace it), the
iteration count under a constant schedule (nothing else depends on it), and any key only
one side records (checkpoints written before it was recorded).
"""
from __future__ import annotations

import hashlib
import json

IGNORED = ("device", "init")
_SHOWN = 60          # characters of a value shown in a message


def differences(saved: dict, current: dict) -> list:
    """``["batch_size: 2 in the checkpoint, 4 now", ...]``, empty when the runs match."""
    saved, current = _plain(saved), _plain(current)
    ignored = set(IGNORED)
    if saved.get("schedule") == current.get("schedule") == "constant":
        ignored.add("iters")
    return [f"{key}: {_show(saved[key])} in the checkpoint, {_show(current[key])} now"
            for key in sorted(set(saved) & set(current) - ignored)
            if saved[key] != current[key]]


def data_fingerprint(dataset) -> dict | None:
    """``{"items": N, "sha256": ...}`` of what a data set holds, or None for no data set.

    The digest covers the item ids where the data set has them (``VOCSegmentation.ids``:
    the lines of its split file), else its ``repr`` where that describes it (a generated
    ``ShapesDataset``: its size, seed and shapes), else only the count.
    """
    if dataset is None:
        return None
    ids = getattr(dataset, "ids", None)
    if ids is not None:
        text = "ids:" + "\n".join(map(str, ids))
    else:
        text = repr(dataset)
        text = "" if " object at 0x" in text else "repr:" + text
    return {"items": len(dataset), "sha256": hashlib.sha256(text.encode()).hexdigest()[:16]}


def _plain(config: dict) -> dict:
    """The configuration as JSON gives it back (tuples become lists, as when saved), with
    nested objects flattened one level (``data.train``), so that a message names the part
    that differs."""
    flat = {}
    for key, value in json.loads(json.dumps(config)).items():
        if isinstance(value, dict):
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    return flat


def _show(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= _SHOWN else text[:_SHOWN - 3] + "..."
