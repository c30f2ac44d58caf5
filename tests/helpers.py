"""Small helpers shared by the tests."""
import numpy as np

from minifcn.backend import asnumpy


def rel_error(got, want) -> float:
    """Max absolute difference relative to the largest magnitude of ``want``.

    Element-wise relative error is meaningless where ``want`` is near zero, so errors are
    measured against the array's scale: ``max|got - want| / max|want|``.
    """
    got = np.asarray(asnumpy(got), dtype=np.float64)
    want = np.asarray(asnumpy(want), dtype=np.float64)
    assert got.shape == want.shape, f"shape {got.shape} != {want.shape}"
    scale = np.abs(want).max(initial=0.0)
    return float(np.abs(got - want).max(initial=0.0) / (scale if scale > 0 else 1.0))


def count_calls(monkeypatch, module, names) -> dict:
    """Wrap ``module.<name>`` for each name so that the returned dict counts its calls."""
    counts = dict.fromkeys(names, 0)
    for name in counts:
        original = getattr(module, name)

        def counting(*args, _name=name, _original=original):
            counts[_name] += 1
            return _original(*args)

        monkeypatch.setattr(module, name, counting)
    return counts
