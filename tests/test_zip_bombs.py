"""Zip bombs given as weights: refused with one line and exit 2, at a bounded peak memory.

Each bomb is a small file whose members declare 256 MiB of zeros (deflated about 1000 to
1), built three ways: a member the checksum table does not list, a member listed in a forged
table with valid checksums (so only the size limit can refuse it), and many small members
in a plain .npz. ``minifcn predict`` runs in a subprocess that reports its own peak RSS;
reading any of them in full would take it past 256 MiB, while the limit keeps it near the
interpreter's own (about 45 MB). The in-process tests show what is read and when.
"""
import json
import subprocess
import sys
import zipfile
import zlib

import numpy as np
import pytest

from minifcn import npz_members
from minifcn.io import METADATA_KEY, WeightsError, read_archive, save_weights
from minifcn.models import FCN32s

LINUX = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
BOMB_BYTES = 256 << 20
PEAK_LIMIT = 150 << 20         # the interpreter and minifcn alone: about 45 MB
# The peak of this process's own memory (VmHWM: ru_maxrss would count the pytest process
# that forked it, whose pages the child holds until exec).
PEAK = """
def peak():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM"))
"""
REPORT_PEAK = PEAK + """
import sys
from minifcn.cli import main
status = main(sys.argv[1:])
print(peak(), file=sys.stderr)
sys.exit(status)
"""


def _zeros_member(archive, name, nbytes, shape=None):
    """A deflated .npy member of ``nbytes`` zero bytes (header: float32 ``shape``)."""
    with archive.open(name + ".npy", "w", force_zip64=True) as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": "<f4", "fortran_order": False, "shape": shape or (nbytes // 4,)})
        chunk = bytes(1 << 22)
        for start in range(0, nbytes, len(chunk)):
            f.write(chunk[:min(len(chunk), nbytes - start)])


def _weights(path):
    save_weights(path, FCN32s(n_class=2, width=1 / 64))
    return path


def _forge_listing(path, name, nbytes):
    """Add ``name`` (float32 zeros) to the file's table with valid CRCs, as an attacker
    can: the table's own checksum is computed by the documented rule."""
    with zipfile.ZipFile(path) as archive:
        entry = json.loads(str(np.load(archive.open(METADATA_KEY + ".npy"))[()]))
        members = {i.filename: archive.read(i) for i in archive.infolist()
                   if i.filename != METADATA_KEY + ".npy"}
    crc = 0
    for _ in range(nbytes >> 22):
        crc = zlib.crc32(bytes(1 << 22), crc)
    entry["arrays"][name] = {"dtype": "<f4", "shape": [nbytes // 4], "crc32": f"{crc:08x}"}
    entry.pop("crc32")
    text = json.dumps(entry, sort_keys=True, separators=(",", ":"))
    entry["crc32"] = f"{zlib.crc32(text.encode()):08x}"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        with archive.open(METADATA_KEY + ".npy", "w") as f:
            np.lib.format.write_array(f, np.array(json.dumps(entry)))
        for member, raw in members.items():
            archive.writestr(member, raw)
        _zeros_member(archive, name, nbytes)


def _bomb(kind, path):
    if kind == "unlisted-member":
        _weights(path)
        with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
            _zeros_member(archive, "bomb", BOMB_BYTES)
    elif kind == "listed-member":
        _forge_listing(_weights(path), "bomb", BOMB_BYTES)
    elif kind == "many-small-members":
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
            for i in range(1024):
                _zeros_member(archive, f"m{i}", BOMB_BYTES // 1024)
    elif kind == "lying-header":            # declares 2 GiB, holds 64 bytes
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            _zeros_member(archive, "bomb", 64, shape=(2 ** 29,))
    return path


@LINUX
@pytest.mark.slow
@pytest.mark.parametrize("kind", ["unlisted-member", "listed-member", "many-small-members",
                                  "lying-header"])
def test_a_bomb_given_to_predict_is_one_line_exit_2_at_bounded_memory(tmp_path, kind):
    bomb = _bomb(kind, tmp_path / f"{kind}.npz")
    assert bomb.stat().st_size < 2 << 20
    image = tmp_path / "image.png"
    from PIL import Image
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    done = subprocess.run([sys.executable, "-c", REPORT_PEAK, "predict", str(image),
                           "--weights", str(bomb), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120)
    *lines, peak = done.stderr.splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith("minifcn: error: predict: ") and str(bomb) in lines[0]
    assert int(peak) < PEAK_LIMIT, f"peak RSS {int(peak) >> 20} MiB"


def test_the_declared_sizes_are_refused_before_any_member_is_opened(tmp_path, monkeypatch):
    path = tmp_path / "big.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        _zeros_member(archive, "a", 80 << 20)          # 80 MiB in about 80 kB
    opened = []
    real_open = zipfile.ZipFile.open
    monkeypatch.setattr(zipfile.ZipFile, "open",
                        lambda self, name, *a, **k: opened.append(name) or
                        real_open(self, name, *a, **k))
    with pytest.raises(WeightsError, match=r"big.npz': its members declare 83886208 bytes "
                                           r"uncompressed in \d+ bytes on disk, more than 16 "
                                           r"times as much: refused unread"):
        read_archive(path)
    assert opened == []


def test_a_member_outside_the_table_is_refused_unread(tmp_path, monkeypatch):
    path = _weights(tmp_path / "w.npz")
    with zipfile.ZipFile(path, "a") as archive:
        with archive.open("extra.npy", "w") as f:
            np.lib.format.write_array(f, np.zeros(1000, np.float32))
    read = []
    real_read = npz_members.NpzMembers.read
    monkeypatch.setattr(npz_members.NpzMembers, "read",
                        lambda self, name, *a: read.append(name) or real_read(self, name, *a))
    with pytest.raises(WeightsError, match="extra not listed in its metadata"):
        read_archive(path)
    assert read == [METADATA_KEY]


@pytest.mark.parametrize("shape, message", [
    ((2 ** 29,), r"member 'a' declares 192 bytes in the zip directory, but its .npy header "
                 r"\(<f4 \(536870912,\)\) makes 2147483776"),
    ((4,), r"member 'a' declares 192 bytes .* makes 144"),
], ids=["header-says-more", "header-says-less"])
def test_a_header_that_disagrees_with_the_directory_is_refused_before_reading(
        tmp_path, monkeypatch, shape, message):
    path = tmp_path / "lying.npz"
    with zipfile.ZipFile(path, "w") as archive:
        _zeros_member(archive, "a", 64, shape=shape)
    allocated = []
    real_empty = np.empty
    monkeypatch.setattr(npz_members.np, "empty",
                        lambda *a, **k: allocated.append(a) or real_empty(*a, **k))
    with pytest.raises(WeightsError, match=message):
        read_archive(path)
    assert allocated == []


def test_compressed_weights_are_read(tmp_path):
    """numpy.savez_compressed of real weights is far from the limit (and so is a small file
    of zeros, under the 64 MiB every file may declare)."""
    model = FCN32s(n_class=2, width=1 / 16, rng=0)
    arrays = {k: np.asarray(v) for k, v in model.state_dict().items()}
    np.savez_compressed(tmp_path / "c.npz", **arrays, zeros=np.zeros(1 << 20))
    got = read_archive(tmp_path / "c.npz").arrays
    assert got.keys() == {*arrays, "zeros"}
    for name, value in arrays.items():
        np.testing.assert_array_equal(got[name], value)
    fortran = np.asfortranarray(np.arange(12.0).reshape(3, 4))
    np.savez(tmp_path / "f.npz", a=fortran)
    np.testing.assert_array_equal(read_archive(tmp_path / "f.npz").arrays["a"], fortran)


@LINUX
def test_the_peak_measure_sees_a_large_allocation():
    """The subprocess's measure is the one that would show a bomb read in full."""
    code = PEAK + "import numpy\nx = numpy.ones(300 << 20, numpy.uint8)\nprint(peak())"
    peak = int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              check=True).stdout)
    assert peak > 300 << 20
