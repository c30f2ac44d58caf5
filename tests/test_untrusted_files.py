"""Untrusted files are refused before they can do harm: no pickle in an .npz or a .pth ever
runs, on any path that reads one (API and command line); an image declaring a huge size is
refused before decoding; label values outside the classes are reported with the file."""
import os
import re
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from minifcn import cli
from minifcn.data import DatasetError, VOCSegmentation, read_image, read_label
from minifcn.data.shapes import write_voc
from minifcn.inference import model_from_weights, predict
from minifcn.io import WeightsError, load_weights, read_archive, read_weights, save_weights
from minifcn.models import FCN8s, from_vgg16
from minifcn.train import CheckpointError, load_checkpoint

PILLOW_DEFAULT_LIMIT = 1024 * 1024 * 1024 // 4 // 3     # Image.MAX_IMAGE_PIXELS out of the box
SHAPES = ["--classes", "background,disc,rectangle,triangle", "--width", "0.0625",
          "--no-progress", "--iters", "1"]


class Payload:
    """Unpickling it calls ``open(marker, "w")``: the marker file proves that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _model():
    return FCN8s(n_class=4, width=1 / 32, rng=0)


@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    write_voc(root, {"train": 2, "val": 1}, size=(32, 32), seed=0)
    return root


@pytest.fixture
def evil(tmp_path):
    """``(evil.npz, marker)``: FCN-8s weights plus one pickled object array."""
    marker = tmp_path / "pickle-ran"
    arrays = dict(_model().state_dict())
    arrays["fc6.bias"] = np.array([Payload(marker)], dtype=object)
    np.savez(tmp_path / "evil.npz", **arrays)             # numpy.savez pickles it
    return tmp_path / "evil.npz", marker


REFUSAL = "member 'fc6.bias' is a pickled object array; minifcn never unpickles"


def test_the_payload_is_live_when_unpickled(evil):
    """The control: loading with pickles allowed runs the payload (so its absence below
    means the payload was refused, not that it was harmless)."""
    path, marker = evil
    with np.load(path, allow_pickle=True) as archive:
        archive["fc6.bias"]
    assert marker.exists()


@pytest.mark.parametrize("read", [
    read_weights,
    read_archive,
    lambda p: load_weights(p, _model()),
    model_from_weights,
    lambda p: from_vgg16(FCN8s, p, n_class=4),
], ids=["read_weights", "read_archive", "load_weights", "model_from_weights", "from_vgg16"])
def test_a_pickle_in_a_weight_file_is_refused_and_never_runs(evil, read):
    path, marker = evil
    with pytest.raises(WeightsError, match=REFUSAL):
        read(path)
    assert not marker.exists()


def test_a_pickle_in_a_checkpoint_is_refused_and_never_runs(evil):
    path, marker = evil
    model = _model()
    before = [p.data.copy() for p in model.parameters()]
    with pytest.raises(CheckpointError, match=REFUSAL):
        load_checkpoint(path, model)
    assert not marker.exists()
    for p, value in zip(model.parameters(), before):
        np.testing.assert_array_equal(p.data, value)


@pytest.mark.parametrize("command", ["predict", "evaluate", "train --init", "train --resume"])
def test_every_command_that_reads_weights_refuses_a_pickle(evil, shapes_root, tmp_path, capsys,
                                                            command):
    path, marker = evil
    image = next((shapes_root / "JPEGImages").iterdir())
    argv = {"predict": ["predict", image, "--weights", path, "--out", tmp_path / "out"],
            "evaluate": ["evaluate", "--weights", path, "--data-dir", shapes_root],
            "train --init": ["train", "--data-dir", shapes_root, *SHAPES, "--init", path,
                             "--out", tmp_path / "run"],
            "train --resume": ["train", "--data-dir", shapes_root, *SHAPES, "--resume", path,
                               "--out", tmp_path / "run"]}[command]
    assert cli.main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("minifcn: error: ") and err.count("\n") == 1, err
    assert repr(str(path)) in err and REFUSAL in err
    assert not marker.exists()


def test_predict_refuses_a_pickle_as_a_user_runs_it(evil, shapes_root, tmp_path):
    path, marker = evil
    image = next((shapes_root / "JPEGImages").iterdir())
    done = subprocess.run([sys.executable, "-m", "minifcn", "predict", str(image), "--weights",
                           str(path), "--out", str(tmp_path)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert REFUSAL in done.stderr and not marker.exists()


# --- PyTorch files ------------------------------------------------------------------------

def _evil_pth(torch, tmp_path, whole):
    marker = tmp_path / "pickle-ran"
    state = {"conv1_1.weight": torch.zeros(2, 3, 3, 3), "conv1_1.bias": torch.zeros(2)}
    torch.save(Payload(marker) if whole else {**state, "extra": Payload(marker)},
               tmp_path / "evil.pth")
    return tmp_path / "evil.pth", marker


@pytest.mark.parametrize("whole", [False, True], ids=["inside-a-state-dict", "the-whole-file"])
def test_a_malicious_pth_is_refused_by_convert_and_never_runs(torch, tmp_path, capsys, whole):
    from minifcn.convert import ConversionError, convert_file

    path, marker = _evil_pth(torch, tmp_path, whole)
    with pytest.raises(ConversionError, match=r"cannot be loaded with torch.load\(weights_only="
                                              r"True\).*holds objects besides tensors"):
        convert_file(path, tmp_path / "out.npz")
    assert cli.main(["convert", str(path), str(tmp_path / "out.npz")]) == 2
    err = capsys.readouterr().err
    assert "weights_only=True" in err and err.count("\n") == 1, err
    assert not marker.exists() and not (tmp_path / "out.npz").exists()
    loaded = torch.load(path, weights_only=False)   # the control: unrestricted, it runs
    assert marker.exists()
    (loaded if whole else loaded["extra"]).close()


# --- images -------------------------------------------------------------------------------

def _png_declaring(path, width, height, colour_type=2):
    """A PNG whose header (valid CRC) declares ``width x height``; its data is a few bytes."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    return path


@pytest.fixture
def bomb_guard_on():
    """Every minifcn module that reads images leaves Pillow's limit on (checked before a
    huge image is read, so that a guard turned off fails here instead of decoding it)."""
    assert Image.MAX_IMAGE_PIXELS is not None
    assert Image.MAX_IMAGE_PIXELS <= PILLOW_DEFAULT_LIMIT


def test_no_minifcn_module_turns_the_pillow_limit_off():
    import minifcn.cli.predict  # noqa: F401  (the modules that read images, imported)
    import minifcn.demo  # noqa: F401
    import minifcn.training_setup  # noqa: F401

    assert Image.MAX_IMAGE_PIXELS == PILLOW_DEFAULT_LIMIT
    assignment = re.compile(r"MAX_IMAGE_PIXELS\s*=[^=]|setattr\([^)]*MAX_IMAGE_PIXELS")
    sources = [os.path.join(folder, name) for folder, _, names in
               os.walk(os.path.dirname(minifcn.__file__)) for name in names
               if name.endswith(".py")]
    assert len(sources) > 50
    for source in sources:
        with open(source, encoding="utf-8") as f:
            assert not assignment.search(f.read()), f"{source} sets MAX_IMAGE_PIXELS"


HUGE = 100_000     # 100000 x 100000 = 10^10 pixels: 30 GB as RGB


@pytest.mark.parametrize("read", [
    read_image,
    lambda p: predict(_model(), p),
    read_label,
], ids=["read_image", "predict", "read_label"])
def test_an_image_declaring_a_huge_size_is_refused_before_decoding(bomb_guard_on, tmp_path, read):
    path = _png_declaring(tmp_path / "huge.png", HUGE, HUGE, colour_type=0)
    with pytest.raises(DatasetError, match=r"refusing to open .*huge\.png: Image size "
                                           r"\(10000000000 pixels\) exceeds limit"):
        read(path)


def test_a_huge_image_in_a_voc_folder_or_given_to_predict_is_a_user_error(
        bomb_guard_on, shapes_root, tmp_path, capsys):
    root = tmp_path / "voc"
    write_voc(root, {"train": 2}, size=(32, 32), seed=0)
    first = sorted((root / "JPEGImages").iterdir())[0]
    _png_declaring(first, HUGE, HUGE)                      # Pillow goes by content, not name
    with pytest.raises(DatasetError, match=f"refusing to open .*{first.name}"):
        VOCSegmentation(root, n_class=4)[0]
    save_weights(tmp_path / "w.npz", _model())
    huge = _png_declaring(tmp_path / "huge.png", HUGE, HUGE)
    assert cli.main(["predict", str(huge), "--weights", str(tmp_path / "w.npz"),
                     "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "refusing to open" in err and "huge.png" in err, err
    assert "MAX_IMAGE_PIXELS" in err


# --- labels -------------------------------------------------------------------------------

def _write_label(path, label):
    img = Image.frombytes("P", label.shape[::-1], label.tobytes())
    img.putpalette(bytes(range(256)) * 3)
    img.save(path)
    return path


def test_label_values_outside_the_classes_are_reported_with_file_values_and_place(tmp_path):
    label = np.zeros((6, 8), np.uint8)
    label[0, :] = 255                                      # ignore: allowed
    label[2, 3], label[4, 1:4] = 30, 254
    path = _write_label(tmp_path / "stray.png", label)
    with pytest.raises(DatasetError, match=r"label .*stray\.png holds values \[30, 254\] "
                                           r"outside 0..20 and 255 \(ignore\), in 4 pixels, "
                                           r"the first at row 2, column 3"):
        read_label(path)
    np.testing.assert_array_equal(read_label(path, n_class=255), label)


def test_many_stray_values_are_counted(tmp_path):
    label = np.arange(48, dtype=np.uint8).reshape(6, 8)
    path = _write_label(tmp_path / "many.png", label)
    with pytest.raises(DatasetError, match=r"holds values \[4, 5, 6, 7, 8, 9, 10, 11, 12, 13\] "
                                           r"\(and 34 more\) outside 0..3"):
        read_label(path, n_class=4)


def test_evaluate_reports_a_stray_label_as_a_user_error(shapes_root, tmp_path, capsys):
    root = tmp_path / "voc"
    write_voc(root, {"val": 2}, size=(32, 32), seed=0)
    label_file = sorted((root / "SegmentationClass").iterdir())[0]
    label = np.array(Image.open(label_file))
    label[5, 7] = 30
    _write_label(label_file, label)
    save_weights(tmp_path / "w.npz", _model())
    assert cli.main(["evaluate", "--weights", str(tmp_path / "w.npz"),
                     "--data-dir", str(root)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and label_file.name in err and "[30]" in err, err
