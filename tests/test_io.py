"""minifcn.io: weight files round-trip, are written atomically, never unpickle, and a file
that cannot be read or does not fit raises WeightsError naming it, leaving the model as it was."""
import json
import os
import pickle
import re

import numpy as np
import pytest

import minifcn
from minifcn.backend import asnumpy
from minifcn.io import (METADATA_KEY, WeightsError, atomic_write, is_torch_file, load_weights,
                        read_weights, save_weights, write_weights)
from minifcn.nn import Conv2d, Module, Parameter


class Pair(Module):
    def __init__(self, rng, shape, dtype):
        super().__init__()
        self.weight = Parameter(rng.standard_normal(shape).astype(dtype))
        self.bias = Parameter(rng.standard_normal(shape[0]).astype(dtype))


class Stage(Module):
    def __init__(self, rng, dtype):
        super().__init__()
        self.conv = Pair(rng, (4, 4, 3, 3), dtype)
        self.inner = Module()
        self.inner.skip = Pair(rng, (4, 4, 1, 1), dtype)


class Toy(Module):
    """A stand-in for an FCN: nested names, a frozen parameter, arch / n_class / width."""

    arch = "toy"

    def __init__(self, seed=0, n_class=3, width=0.5, dtype=np.float32):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.n_class, self.width = n_class, width
        self.upscore = Parameter(rng.standard_normal((n_class, n_class, 4, 4)).astype(dtype),
                                 requires_grad=False)
        self.stem = Pair(rng, (4, 2, 3, 3), dtype)
        self.stage = Stage(rng, dtype)
        self.score = Pair(rng, (n_class, 4, 1, 1), dtype)


TOY_NAMES = ["upscore", "stem.weight", "stem.bias", "stage.conv.weight", "stage.conv.bias",
             "stage.inner.skip.weight", "stage.inner.skip.bias", "score.weight", "score.bias"]


def _on(xp, model):
    return model.to(device="cuda") if xp is not np else model


def _snapshot(model):
    """The parameter arrays themselves, and copies of their values, to prove nothing moved."""
    return {name: (p.data, asnumpy(p.data).copy()) for name, p in model.named_parameters()}


def _assert_unchanged(model, snapshot):
    for name, p in model.named_parameters():
        array, values = snapshot[name]
        assert p.data is array, f"{name} was replaced"
        np.testing.assert_array_equal(asnumpy(p.data), values, err_msg=name)


def _assert_same_weights(got, want):
    for (name, p), (_, q) in zip(got.named_parameters(), want.named_parameters(), strict=True):
        assert p.dtype == q.dtype, name
        np.testing.assert_array_equal(asnumpy(p.data), asnumpy(q.data), err_msg=name)


@pytest.fixture
def saved(tmp_path):
    """A weight file of Toy(seed=0) and its bytes."""
    path = tmp_path / "toy.npz"
    save_weights(path, Toy(seed=0))
    return path, path.read_bytes()


# --- Round trip and format ------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_round_trip_restores_every_array_and_dtype(xp, tmp_path, dtype):
    source = _on(xp, Toy(seed=0, dtype=dtype))
    target = _on(xp, Toy(seed=1, dtype=dtype))
    save_weights(tmp_path / "w.npz", source)
    assert load_weights(tmp_path / "w.npz", target) == ([], [])
    _assert_same_weights(target, source)
    assert all(p.device == q.device for p, q in zip(target.parameters(), source.parameters()))


def test_file_is_a_plain_npz_with_a_json_metadata_entry(saved):
    path, _ = saved
    with np.load(path, allow_pickle=False) as archive:
        assert archive.files == [METADATA_KEY] + TOY_NAMES
        metadata = json.loads(str(archive[METADATA_KEY][()]))
        np.testing.assert_array_equal(archive["stage.inner.skip.weight"],
                                      Toy(seed=0).stage.inner.skip.weight.data)
    assert list(metadata.pop("arrays")) == TOY_NAMES and len(metadata.pop("crc32")) == 8
    assert metadata == {"format": 2, "minifcn": minifcn.__version__, "dtype": "float32",
                        "arch": "toy", "n_class": 3, "width": 0.5}
    assert read_weights(path).metadata == metadata      # the checksums are checked, not shown
    assert list(read_weights(path).arrays) == TOY_NAMES


def test_arch_falls_back_to_the_class_name(tmp_path):
    save_weights(tmp_path / "conv.npz", Conv2d(2, 3, 3, rng=0))
    assert read_weights(tmp_path / "conv.npz").metadata["arch"] == "Conv2d"
    assert "n_class" not in read_weights(tmp_path / "conv.npz").metadata


def test_float32_weights_are_cast_to_a_float64_model(xp, saved):
    path, _ = saved
    target = _on(xp, Toy(seed=1, dtype=np.float64))
    load_weights(path, target)
    for (name, p), q in zip(target.named_parameters(), Toy(seed=0).parameters()):
        assert p.dtype == np.float64, name
        np.testing.assert_array_equal(asnumpy(p.data), q.data.astype(np.float64))


def test_a_plain_npz_without_metadata_loads(tmp_path):
    np.savez(tmp_path / "mine.npz", **Toy(seed=0).state_dict())
    target = Toy(seed=1)
    load_weights(tmp_path / "mine.npz", target)
    _assert_same_weights(target, Toy(seed=0))
    assert read_weights(tmp_path / "mine.npz").metadata == {}


def test_the_path_is_written_exactly_as_given(tmp_path):
    save_weights(tmp_path / "weights.bin", Toy())
    assert os.listdir(tmp_path) == ["weights.bin"]
    load_weights(tmp_path / "weights.bin", Toy(seed=1))


def test_the_metadata_name_is_reserved(tmp_path):
    with pytest.raises(ValueError, match="reserved"):
        write_weights(tmp_path / "w.npz", {METADATA_KEY: np.zeros(1)})


# --- Atomic, durable writes ------------------------------------------------------------------

def test_a_save_failing_midway_leaves_the_previous_file_and_no_temporary(saved, monkeypatch):
    path, before = saved
    real_write_array, calls = np.lib.format.write_array, []

    def write_then_fail(f, array, **kwargs):
        calls.append(1)
        real_write_array(f, array, **kwargs)
        if len(calls) == 3:
            raise OSError("disk full (simulated)")

    monkeypatch.setattr(np.lib.format, "write_array", write_then_fail)
    with pytest.raises(OSError, match="disk full"):
        save_weights(path, Toy(seed=7))
    assert len(calls) == 3
    assert path.read_bytes() == before
    assert os.listdir(path.parent) == [path.name]


def test_atomic_write_replaces_the_file_and_fsyncs_file_and_folder(tmp_path, monkeypatch):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    synced, real_fsync = [], os.fsync

    def record(fd):
        synced.append(os.path.realpath(f"/proc/self/fd/{fd}") if os.path.isdir("/proc")
                      else fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", record)
    atomic_write(target, lambda f: f.write(b"new contents"))
    assert target.read_bytes() == b"new contents"
    assert os.listdir(tmp_path) == ["out.bin"]
    assert len(synced) == 2
    if os.path.isdir("/proc"):
        assert synced[0].startswith(str(tmp_path) + os.sep)      # the temporary file
        assert synced[0] != str(target) and synced[1] == str(tmp_path)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_atomic_write_gives_the_permissions_open_would(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    atomic_write(tmp_path / "f", lambda f: f.write(b"x"))
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o666 & ~umask


def test_atomic_write_failing_midway_leaves_the_target_and_no_temporary(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")

    def half_then_fail(f):
        f.write(b"half of the new")
        raise RuntimeError("writer failed")

    with pytest.raises(RuntimeError, match="writer failed"):
        atomic_write(target, half_then_fail)
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.bin"]


@pytest.mark.parametrize("failing", ["write", pytest.param("fsync", marks=pytest.mark.skipif(
    not os.path.isdir("/proc/self/fd"), reason="names descriptors through /proc"))])
def test_files_written_together_all_stay_old_when_one_fails(tmp_path, monkeypatch, failing):
    """predict's label PNG and overlay: a full disk on the second leaves both old ones."""
    from minifcn.atomic import atomic_write_all

    labels, overlay = tmp_path / "a_labels.png", tmp_path / "a_overlay.png"
    labels.write_bytes(b"old labels")
    overlay.write_bytes(b"old overlay")

    def full_disk(f):
        f.write(b"new overlay, half")
        if failing == "write":
            raise OSError(28, "No space left on device")

    real_fsync = os.fsync

    def fsync(fd):              # the labels' data reach the disk only at its fsync
        if failing == "fsync" and ".a_labels.png." in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError, match="No space left"):
        atomic_write_all([(labels, lambda f: f.write(b"new labels")), (overlay, full_disk)])
    assert labels.read_bytes() == b"old labels" and overlay.read_bytes() == b"old overlay"
    assert sorted(os.listdir(tmp_path)) == ["a_labels.png", "a_overlay.png"]
    monkeypatch.undo()
    atomic_write_all([(labels, lambda f: f.write(b"new labels")),
                      (overlay, lambda f: f.write(b"new overlay"))])
    assert labels.read_bytes() == b"new labels" and overlay.read_bytes() == b"new overlay"


def test_saving_into_a_missing_folder_fails_and_leaves_nothing(tmp_path):
    with pytest.raises(FileNotFoundError):
        save_weights(tmp_path / "nope" / "w.npz", Toy())
    assert os.listdir(tmp_path) == []


# --- Files that cannot be read --------------------------------------------------------------

def _damage(kind, path, data):
    """Replace the valid file at ``path`` with a damaged one; return the path to load."""
    member = Toy(seed=0).stage.conv.weight.data.tobytes()
    if kind == "missing":
        return path.parent / "missing.npz"
    if kind == "directory":
        return path.parent
    if kind == "npy":
        np.save(path.parent / "one.npy", np.zeros(3))
        return path.parent / "one.npy"
    damaged = {"random-bytes": np.random.default_rng(0).bytes(len(data)),
               "empty": b"",
               "cut-in-half": data[:len(data) // 2],
               "cut-last-byte": data[:-1],
               "corrupt-member": _flip(data, data.index(member) + len(member) // 2)}[kind]
    path.write_bytes(damaged)
    return path


def _flip(data, i):
    return data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:]


@pytest.mark.parametrize("kind, message", [
    ("missing", "does not exist"),
    ("directory", "not a readable .npz"),
    ("npy", "single array"),
    ("random-bytes", "not a readable .npz"),
    ("empty", "not a readable .npz"),
    ("cut-in-half", "not a readable .npz"),
    ("cut-last-byte", "not a readable .npz"),
    ("corrupt-member", "member 'stage.conv.weight' cannot be read .*CRC"),
])
def test_an_unreadable_file_raises_weights_error_naming_it(saved, kind, message):
    path = _damage(kind, *saved)
    model = Toy(seed=1)
    snapshot = _snapshot(model)
    with pytest.raises(WeightsError, match=message) as info:
        load_weights(path, model)
    assert repr(str(path)) in str(info.value)
    _assert_unchanged(model, snapshot)


def _torch_file(torch, tmp_path, kind):
    """What users mistake for a weight file: torch.save's zip (``<name>/data.pkl``), its
    legacy format (a bare pickle stream) and a plain pickle."""
    path, state = tmp_path / f"{kind}.pth", {"stem.weight": torch.zeros(4, 3, 3, 3)}
    if kind == "pickle":
        path.write_bytes(pickle.dumps({"stem.weight": [0.0]}, protocol=2))
    else:
        torch.save(state, path, _use_new_zipfile_serialization=kind == "torch-zip")
    return path


@pytest.mark.parametrize("kind", ["torch-zip", "torch-legacy", "pickle"])
@pytest.mark.parametrize("loader", ["load_weights", "model_from_weights"])
def test_a_pytorch_file_is_refused_with_the_command_that_converts_it(torch, tmp_path, kind,
                                                                    loader):
    from minifcn.inference import model_from_weights

    path = _torch_file(torch, tmp_path, kind)
    assert is_torch_file(path)
    model = Toy(seed=1)
    snapshot = _snapshot(model)
    load = {"load_weights": lambda: load_weights(path, model),
            "model_from_weights": lambda: model_from_weights(path)}[loader]
    p = re.escape(str(path))
    with pytest.raises(WeightsError, match=rf"^'{p}' is a PyTorch file \(torch.save\), not "
                                           rf"minifcn's .npz; convert it first: minifcn "
                                           rf"convert {p} OUT.npz$"):
        load()
    _assert_unchanged(model, snapshot)


def test_weight_files_and_other_zips_are_not_pytorch_files(tmp_path):
    save_weights(tmp_path / "w.npz", Toy())
    np.savez(tmp_path / "plain.npz", a=np.zeros(2))
    (tmp_path / "text.pth").write_text("not a pickle")
    for name in ("w.npz", "plain.npz", "text.pth", "missing.pth"):
        assert not is_torch_file(tmp_path / name), name


def test_object_arrays_are_refused_and_never_unpickled(tmp_path):
    marker = tmp_path / "pickle-ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    arrays = dict(Toy(seed=0).state_dict())
    arrays["stem.bias"] = np.array([Payload()], dtype=object)
    np.savez(tmp_path / "evil.npz", **arrays)      # numpy.savez pickles object arrays
    model = Toy(seed=1)
    snapshot = _snapshot(model)
    with pytest.raises(WeightsError, match="member 'stem.bias' is a pickled object array; "
                                           "minifcn never unpickles"):
        load_weights(tmp_path / "evil.npz", model)
    assert not marker.exists()
    _assert_unchanged(model, snapshot)


def test_non_float_arrays_are_refused(tmp_path):
    arrays = dict(Toy(seed=0).state_dict())
    arrays["stem.bias"] = np.arange(4)
    np.savez(tmp_path / "ints.npz", **arrays)
    with pytest.raises(WeightsError, match=r"float arrays, but stem.bias \(int64\)"):
        load_weights(tmp_path / "ints.npz", Toy())


@pytest.mark.parametrize("entry, message", [
    (np.array(json.dumps({"format": 99})), "format 99, newer"),
    (np.array("not json"), "not minifcn metadata"),
    (np.array(["a", "b"]), "not minifcn metadata"),
], ids=["newer-format", "not-json", "not-0-d"])
def test_bad_metadata_is_refused(tmp_path, entry, message):
    np.savez(tmp_path / "w.npz", **{METADATA_KEY: entry}, **Toy().state_dict())
    with pytest.raises(WeightsError, match=message):
        load_weights(tmp_path / "w.npz", Toy())


# --- Files that do not fit the model --------------------------------------------------------

def test_another_width_or_n_class_names_keys_and_shapes(xp, tmp_path):
    save_weights(tmp_path / "w.npz", Toy(n_class=5, width=1.0))
    model = _on(xp, Toy(seed=1))
    snapshot = _snapshot(model)
    for strict in (True, False):       # a wrong shape is refused even when not strict
        with pytest.raises(WeightsError) as info:
            load_weights(tmp_path / "w.npz", model, strict=strict)
        message = str(info.value)
        for part in [str(tmp_path / "w.npz"), "toy, n_class=5, width=1.0",
                     "toy, n_class=3, width=0.5", "score.weight: expected shape (3, 4, 1, 1), "
                     "got (5, 4, 1, 1)", "upscore: expected shape (3, 3, 4, 4)"]:
            assert part in message
        _assert_unchanged(model, snapshot)


def test_missing_and_unexpected_keys_are_named_when_strict(tmp_path):
    arrays = dict(Toy(seed=0).state_dict())
    del arrays["stage.inner.skip.bias"]
    arrays["fc6.weight"] = np.zeros((2, 2), np.float32)
    np.savez(tmp_path / "w.npz", **arrays)
    model = Toy(seed=1)
    snapshot = _snapshot(model)
    with pytest.raises(WeightsError, match=r"missing key 'stage.inner.skip.bias'.*"
                                           r"unexpected key 'fc6.weight'"):
        load_weights(tmp_path / "w.npz", model)
    _assert_unchanged(model, snapshot)
    missing, unexpected = load_weights(tmp_path / "w.npz", model, strict=False)
    assert missing == ["stage.inner.skip.bias"] and unexpected == ["fc6.weight"]
    np.testing.assert_array_equal(model.stem.weight.data, Toy(seed=0).stem.weight.data)
    np.testing.assert_array_equal(model.stage.inner.skip.bias.data,
                                  snapshot["stage.inner.skip.bias"][1])


def test_not_strict_with_no_name_in_common_is_an_error(tmp_path):
    save_weights(tmp_path / "conv.npz", Conv2d(2, 3, 3, rng=0))
    with pytest.raises(WeightsError, match="shares no parameter name with Toy"):
        load_weights(tmp_path / "conv.npz", Toy(), strict=False)


def test_load_state_dict_converts_everything_before_assigning():
    """A value that fails to cast, after good ones, must not leave a half-loaded model."""
    model = Toy(seed=1)
    snapshot = _snapshot(model)
    state = dict(Toy(seed=0).state_dict())
    state["score.bias"] = np.array(["a", "b", "c"])
    with pytest.raises(ValueError):
        model.load_state_dict(state)
    _assert_unchanged(model, snapshot)


# --- The FCN models -------------------------------------------------------------------------

def _randomised(model, seed):
    """Random values everywhere (score layers start at zero, which would hide a mix-up)."""
    rng = np.random.default_rng(seed)
    for p in model.parameters():
        p.data = (0.1 * rng.standard_normal(p.shape)).astype(p.dtype)
    return model.eval()


def test_fcn8s_round_trip_gives_identical_outputs(tmp_path):
    from minifcn.models import FCN8s

    source = _randomised(FCN8s(n_class=3, width=1 / 32), seed=0)
    save_weights(tmp_path / "fcn8s.npz", source)
    assert read_weights(tmp_path / "fcn8s.npz").metadata["arch"] == "fcn8s"
    target = _randomised(FCN8s(n_class=3, width=1 / 32), seed=1)
    load_weights(tmp_path / "fcn8s.npz", target)
    x = np.random.default_rng(2).standard_normal((1, 3, 20, 27)).astype(np.float32)
    np.testing.assert_array_equal(target(x), source(x))


@pytest.mark.parametrize("saved_as, message", [
    (dict(arch="FCN32s", width=1 / 32), "fcn32s, n_class=3, width=0.03125.*missing key "
                                        "'score_pool4.weight'.*unexpected key 'upscore.weight'"),
    (dict(arch="FCN8s", width=1 / 16), r"fcn8s, n_class=3, width=0.0625.*wrong shape for "
                                       r"conv1_1.weight: expected shape \(2, 3, 3, 3\), got "
                                       r"\(4, 3, 3, 3\)"),
], ids=["another-architecture", "another-width"])
def test_fcn_weights_of_another_architecture_or_width_are_refused(tmp_path, saved_as, message):
    from minifcn import models

    cls = getattr(models, saved_as["arch"])
    save_weights(tmp_path / "other.npz", cls(n_class=3, width=saved_as["width"]))
    model = models.FCN8s(n_class=3, width=1 / 32)
    snapshot = _snapshot(model)
    with pytest.raises(WeightsError, match=message):
        load_weights(tmp_path / "other.npz", model)
    _assert_unchanged(model, snapshot)
