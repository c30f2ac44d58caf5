"""Damaged weight files and checkpoints: the checksum table catches every flipped bit and every
truncation, reports it as WeightsError naming the file (and the array), and changes nothing.

Fault injection: a flipped bit at 200 positions (100 spread over the whole file, 100 over
its structure: zip headers, .npy headers, central directory) and truncation at 200 lengths,
for a weight file and for a checkpoint written by a 2-iteration training run; then 200
flips behind a freshly computed zip CRC, which only the checksum table can catch.
"""
import functools
import io
import json
import struct
import zipfile
import zlib

import numpy as np
import pytest

from minifcn.data import ShapesDataset
from minifcn.io import (METADATA_KEY, WeightsError, load_weights, read_archive, read_weights,
                        write_weights)
from minifcn.lr_schedule import LRScheduler
from minifcn.models import FCN8s
from minifcn.nn import Module, Parameter
from minifcn.optim import Adam
from minifcn.train import BatchStream, CheckpointError, load_checkpoint, train

POSITIONS = 200      # flips per file, and truncation lengths per file


class Net(Module):
    """Three parameters; ``big`` spans several zip read buffers (57.6 kB)."""

    def __init__(self, seed):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.big = Parameter(rng.standard_normal((40, 40, 3, 3)).astype(np.float32))
        self.bias = Parameter(rng.standard_normal(40).astype(np.float32))
        self.scale = Parameter(rng.standard_normal(7))


def _snapshot(model):
    return {name: p.data.copy() for name, p in model.named_parameters()}


def _assert_params(model, values):
    for name, p in model.named_parameters():
        np.testing.assert_array_equal(p.data, values[name], err_msg=name)
        assert p.data.dtype == values[name].dtype, name


def _restore(model, values):
    for name, p in model.named_parameters():
        p.data = values[name].copy()


def _flip(data: bytes, i: int, bit: int) -> bytes:
    return data[:i] + bytes([data[i] ^ (1 << bit)]) + data[i + 1:]


@functools.lru_cache(maxsize=None)
def _members(path):
    """``[(name, start, header_end, end)]``: each member's bytes in the file, and where its
    .npy header ends and the array's own bytes begin."""
    out = []
    with open(path, "rb") as f, zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            f.seek(info.header_offset)
            local = f.read(30)
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            start = info.header_offset + 30 + name_len + extra_len
            member = io.BytesIO(archive.read(info))
            if np.lib.format.read_magic(member) == (1, 0):
                np.lib.format.read_array_header_1_0(member)
            else:
                np.lib.format.read_array_header_2_0(member)
            out.append((info.filename[:-4], start, start + member.tell(),
                        start + info.compress_size))
    return out


def _positions(path, size):
    """100 positions spread over the file and 100 over the bytes that are not array data."""
    payload = np.zeros(size, bool)
    for _, _, header_end, end in _members(path):
        payload[header_end:end] = True
    structure = np.flatnonzero(~payload)
    spread = np.linspace(0, size - 1, POSITIONS // 2).astype(int)
    return np.unique(np.concatenate([spread, structure[np.linspace(
        0, len(structure) - 1, POSITIONS // 2).astype(int)]]))


def _in_member_bytes(path, i) -> bool:
    return any(start <= i < end for _, start, _, end in _members(path))


# --- the files under test -----------------------------------------------------------------

@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "net.npz"
    write_weights(path, Net(seed=0).state_dict(), arch="net")
    return path, path.read_bytes(), _snapshot(Net(seed=0))


def _tiny_run(seed=0):
    data = ShapesDataset(8, size=24, seed=0)
    model = FCN8s(n_class=4, width=1 / 32, dropout=0.5, rng=seed)
    opt = Adam(model.parameters(), lr=1e-3)
    return model, opt, LRScheduler(opt, "poly", max_iter=6), BatchStream(data, 2, seed=0)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """``last.npz`` of a 2-iteration run (Adam moments, schedule, batch stream, dropout)."""
    folder = tmp_path_factory.mktemp("run")
    model, opt, sched, batches = _tiny_run()
    train(model, opt, batches, iters=2, scheduler=sched, checkpoint_dir=folder, progress=False)
    path = folder / "last.npz"
    return path, path.read_bytes(), _snapshot(model), opt.state_dict()


# --- the scheme ---------------------------------------------------------------------------

def test_the_table_records_dtype_shape_and_crc32_of_each_array_and_of_itself(weights):
    path, _, values = weights
    with np.load(path, allow_pickle=False) as archive:
        entry = json.loads(str(archive[METADATA_KEY][()]))
    assert entry["format"] == 2
    assert entry["arrays"] == {name: {"dtype": a.dtype.str, "shape": list(a.shape),
                                      "crc32": f"{zlib.crc32(a.tobytes()):08x}"}
                               for name, a in values.items()}
    rest = {k: v for k, v in entry.items() if k != "crc32"}
    canonical = json.dumps(rest, sort_keys=True, separators=(",", ":")).encode()
    assert entry["crc32"] == f"{zlib.crc32(canonical):08x}"
    assert read_weights(path).metadata == {"format": 2, "minifcn": entry["minifcn"],
                                           "dtype": "float32,float64", "arch": "net"}


def test_checkpoints_carry_the_table_for_every_member(checkpoint):
    path, _, _, _ = checkpoint
    with np.load(path, allow_pickle=False) as archive:
        entry = json.loads(str(archive[METADATA_KEY][()]))
        names = [n for n in archive.files if n != METADATA_KEY]
        assert entry["arrays"]["optimizer.state.0.exp_avg"]["crc32"] == \
            f"{zlib.crc32(archive['optimizer.state.0.exp_avg'].tobytes()):08x}"
    assert sorted(entry["arrays"]) == sorted(names)
    assert {"model.fc6.weight", "optimizer.state.0.exp_avg_sq", "scheduler.iteration",
            "data.rng", "iteration", "meta"} <= set(names)
    assert entry["kind"] == "checkpoint"


# --- flips and truncations ----------------------------------------------------------------

def test_a_flipped_bit_anywhere_in_a_weight_file_fails_naming_it_or_changes_nothing(weights):
    path, data, values = weights
    damaged_path = path.parent / "damaged.npz"
    model = Net(seed=1)
    before = _snapshot(model)
    bits = np.random.default_rng(0).integers(0, 8, len(data))
    outcomes = {"refused": 0, "unchanged": 0}
    positions = _positions(path, len(data))
    assert len(positions) >= 0.95 * POSITIONS
    for i in positions:
        damaged_path.write_bytes(_flip(data, i, bits[i]))
        try:
            load_weights(damaged_path, model)
        except WeightsError as err:
            assert repr(str(damaged_path)) in str(err)
            _assert_params(model, before)
            outcomes["refused"] += 1
        else:      # a zip header field no reader uses (a time stamp, a local size copy)
            assert not _in_member_bytes(path, i), f"flip at {i} loaded"
            _assert_params(model, values)
            _restore(model, before)
            outcomes["unchanged"] += 1
    assert outcomes["refused"] > 0.8 * len(positions)


def test_a_flipped_bit_anywhere_in_a_checkpoint_fails_naming_it_or_changes_nothing(checkpoint):
    path, data, values, opt_state = checkpoint
    damaged_path = path.parent / "damaged.npz"
    model, opt, _, _ = _tiny_run(seed=1)
    before = _snapshot(model)
    bits = np.random.default_rng(1).integers(0, 8, len(data))
    refused = 0
    for i in _positions(path, len(data)):
        damaged_path.write_bytes(_flip(data, i, bits[i]))
        try:
            load_checkpoint(damaged_path, model, opt)
        except WeightsError as err:
            assert isinstance(err, CheckpointError)
            assert repr(str(damaged_path)) in str(err)
            _assert_params(model, before)
            refused += 1
        else:
            assert not _in_member_bytes(path, i), f"flip at {i} loaded"
            _assert_params(model, values)
            np.testing.assert_array_equal(opt.state[0]["exp_avg"],
                                          opt_state["state.0.exp_avg"])
            _restore(model, before)
    assert refused > 0.8 * POSITIONS


@pytest.mark.parametrize("kind", ["weights", "checkpoint"])
def test_a_truncated_file_fails_naming_it(weights, checkpoint, kind):
    path, data = (weights if kind == "weights" else checkpoint)[:2]
    damaged_path = path.parent / f"cut-{kind}.npz"
    model = Net(seed=1) if kind == "weights" else _tiny_run(seed=1)[0]
    before = _snapshot(model)
    load = load_weights if kind == "weights" else load_checkpoint
    lengths = np.unique(np.linspace(0, len(data) - 1, POSITIONS).astype(int))
    for n in lengths:
        damaged_path.write_bytes(data[:n])
        with pytest.raises(WeightsError) as info:
            load(damaged_path, model)
        assert repr(str(damaged_path)) in str(info.value)
    _assert_params(model, before)
    assert len(lengths) == POSITIONS


# --- what the zip CRC cannot see ----------------------------------------------------------

def _rezip(path, out, change):
    """Copy the archive ``path`` to ``out`` member by member, ``change(name, raw) -> raw or
    None`` (None drops the member); zipfile computes fresh CRCs, so only the table can tell."""
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            raw = change(info.filename[:-4], source.read(info))
            if raw is not None:
                target.writestr(info.filename, raw)


def test_flips_behind_a_fresh_zip_crc_are_caught_by_the_checksums(weights):
    path, _, values = weights
    out = path.parent / "rezipped.npz"
    members = {name: (start, header_end, end) for name, start, header_end, end in
               _members(path)}
    offsets = [(name, j) for name, (start, _, end) in members.items()
               for j in range(end - start)]
    rng = np.random.default_rng(2)
    model = Net(seed=1)
    before = _snapshot(model)
    for k in np.linspace(0, len(offsets) - 1, POSITIONS).astype(int):
        target, j = offsets[k]
        bit = int(rng.integers(8))
        _rezip(path, out, lambda name, raw: _flip(raw, j, bit) if name == target else raw)
        in_array = j >= members[target][1] - members[target][0]
        try:
            load_weights(out, model)
        except WeightsError as err:
            message = str(err)
            assert repr(str(out)) in message
            if in_array and target != METADATA_KEY:
                assert f"array {target!r} fails its checksum" in message
            _assert_params(model, before)
        else:      # an .npy header rewritten to mean the same ('<f4' -> '=f4', ',' -> '\f')
            assert not in_array, f"flip at byte {j} of {target} loaded"
            _assert_params(model, values)
            _restore(model, before)


def test_a_header_flip_that_makes_numpy_read_fewer_bytes_is_caught(weights):
    """'(40, 40, 3, 3)' -> '(40, 40, 3, 1)': NumPy stops a third of the way into the member,
    so the zip CRC (checked only at the member's end) never runs; the table's shape does."""
    path, data, _ = weights
    header = data.index(b"'shape': (40, 40, 3, 3)")
    damaged = path.parent / "short.npz"
    damaged.write_bytes(_flip(data, header + len("'shape': (40, 40, 3, "), 1))
    with pytest.raises(WeightsError, match=r"array 'big' fails its checksum \(recorded <f4 "
                                           r"\(40, 40, 3, 3\) .*found <f4 \(40, 40, 3, 1\)"):
        read_weights(damaged)


def test_a_dropped_or_added_member_is_caught(weights, tmp_path):
    path, _, _ = weights
    _rezip(path, tmp_path / "dropped.npz", lambda name, raw: None if name == "bias" else raw)
    with pytest.raises(WeightsError, match="damaged or altered: bias listed in its metadata "
                                           "missing"):
        read_weights(tmp_path / "dropped.npz")
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(tmp_path / "added.npz", "w") as z:
        for info in source.infolist():
            z.writestr(info, source.read(info))
        with z.open("extra.npy", "w") as member:
            np.lib.format.write_array(member, np.zeros(3))
    with pytest.raises(WeightsError, match="extra not listed in its metadata"):
        read_weights(tmp_path / "added.npz")


def _edit_metadata(path, out, edit):
    def change(name, raw):
        if name != METADATA_KEY:
            return raw
        entry = json.loads(str(np.load(io.BytesIO(raw))[()]))
        edit(entry)
        buffer = io.BytesIO()
        np.save(buffer, np.array(json.dumps(entry)))
        return buffer.getvalue()
    _rezip(path, out, change)


@pytest.mark.parametrize("edit", [
    lambda e: e.update(arch="fcn8s"),
    lambda e: e.update(format=1),                  # would skip the table, if it could
    lambda e: e["arrays"]["bias"].update(shape=[41]),
    lambda e: e.pop("arrays"),
], ids=["arch", "format-1", "table-entry", "no-table"])
def test_edited_metadata_fails_its_own_checksum(weights, tmp_path, edit):
    path, _, _ = weights
    _edit_metadata(path, tmp_path / "edited.npz", edit)
    with pytest.raises(WeightsError, match=r"its metadata \('__minifcn__'\) fails its "
                                           "checksum"):
        read_weights(tmp_path / "edited.npz")


# --- older files --------------------------------------------------------------------------

def test_format_1_weight_files_without_checksums_still_load(tmp_path):
    entry = {"format": 1, "minifcn": "0.1.0", "dtype": "float32,float64", "arch": "net"}
    np.savez(tmp_path / "v1.npz", **{METADATA_KEY: np.array(json.dumps(entry))},
             **Net(seed=0).state_dict())
    model = Net(seed=1)
    load_weights(tmp_path / "v1.npz", model)
    _assert_params(model, _snapshot(Net(seed=0)))
    assert read_weights(tmp_path / "v1.npz").metadata == entry


def test_checkpoints_written_before_the_table_still_load(checkpoint, tmp_path):
    path, _, values, _ = checkpoint
    arrays = read_archive(path).arrays
    np.savez(tmp_path / "old.npz", **arrays)      # how checkpoints were written before
    model = _tiny_run(seed=1)[0]
    assert load_checkpoint(tmp_path / "old.npz", model).iteration == 2
    _assert_params(model, values)


def test_a_checkpoint_given_as_weights_says_so(checkpoint):
    path = checkpoint[0]
    with pytest.raises(WeightsError, match="is a training checkpoint, not a weight file: "
                                           "use the model.npz"):
        read_weights(path)
