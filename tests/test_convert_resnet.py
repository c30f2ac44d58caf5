"""torchvision's FCN-ResNet50 and DeepLabV3-ResNet50 weights through ``minifcn convert``,
``model_from_weights`` and ``minifcn predict``: the state dict of the plain-torch twin
(tests/torch_segmentation.py, torchvision's keys; torchvision itself is not a dependency)
converts with its options and preprocessing recorded, loads strictly, and predict's labels
are the twin's argmax on an image normalised as torchvision normalises it. BatchNorm's
int64 ``num_batches_tracked`` is accepted, in weight files and checkpoints, and nothing else
that is not float."""
import numpy as np
import pytest
from PIL import Image

from minifcn import cli
from minifcn.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from minifcn.convert import ConversionError, convert_state
from minifcn.inference import model_from_weights
from minifcn.io import WeightsError, read_weights, write_weights
from minifcn.models import FCNResNet50
from minifcn.optim import SGD

N_CLASS, WIDTH = 5, 1 / 16
KINDS = {"fcn": "fcn_resnet50", "deeplabv3": "deeplabv3_resnet50"}
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def twin(torch, kind, aux=True, dtype="double"):
    import torch_segmentation

    net = torch_segmentation.Segmenter(kind, n_class=N_CLASS, width=WIDTH, aux=aux)
    net = torch_segmentation.randomize_(torch, getattr(net, dtype)()).eval()
    return net


def convert(torch, tmp_path, capsys, state, *options):
    torch.save(state, tmp_path / "src.pth")
    status = cli.main(["convert", str(tmp_path / "src.pth"), str(tmp_path / "w.npz"), *options])
    out, err = capsys.readouterr()
    assert (status, err) == (0, ""), err
    return out, tmp_path / "w.npz"


def torchvision_scores(torch, net, image):
    """What torchvision's preset does: ToTensor (/255), Normalize(ImageNet), in float32."""
    x = torch.from_numpy(image).permute(2, 0, 1).float() / 255
    x = (x - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]
    with torch.no_grad():
        return net(x[None].to(next(net.parameters()).dtype))[0][0].numpy()   # (K, H, W)


def image(tmp_path, size=(37, 45)):
    pixels = np.random.default_rng(3).integers(0, 256, (*size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "photo.png")
    return pixels, tmp_path / "photo.png"


@pytest.mark.parametrize("kind", KINDS)
def test_converted_weights_predict_the_twins_argmax_in_float64(torch, tmp_path, capsys, kind):
    net = twin(torch, kind)
    out, weights = convert(torch, tmp_path, capsys, net.state_dict())
    assert f"torchvision {'FCN' if kind == 'fcn' else 'DeepLabV3'}-ResNet50 layout" in out
    assert f": {KINDS[kind]}, n_class {N_CLASS}, width 0.0625" in out
    assert "with the auxiliary head" in out
    arrays, metadata = read_weights(weights)
    assert {k: metadata[k] for k in ("arch", "n_class", "width", "aux", "preprocess")} == \
        {"arch": KINDS[kind], "n_class": N_CLASS, "width": WIDTH, "aux": True,
         "preprocess": "imagenet"}
    assert metadata["dtype"] == "float64"
    assert arrays["backbone.bn1.num_batches_tracked"].dtype == np.int64
    pixels, photo = image(tmp_path)
    assert cli.main(["predict", str(photo), "--weights", str(weights),
                     "--out", str(tmp_path / "out")]) == 0
    labels = np.asarray(Image.open(tmp_path / "out" / "photo_labels.png"))
    expected = torchvision_scores(torch, net, pixels).argmax(axis=0)
    assert labels.shape == expected.shape and len(np.unique(expected)) > 1
    assert np.array_equal(labels, expected)


def test_float32_weights_score_like_the_twin(torch, tmp_path, capsys):
    net = twin(torch, "deeplabv3", dtype="float")
    _, weights = convert(torch, tmp_path, capsys, net.state_dict())
    model, metadata = model_from_weights(weights, with_metadata=True)
    assert model.parameters()[0].data.dtype == np.float32 and metadata["dtype"] == "float32"
    pixels, _ = image(tmp_path)
    x = (pixels / np.float32(255) - np.float32(MEAN)) / np.float32(STD)
    ours = model(x.transpose(2, 0, 1)[None].astype(np.float32))[0]
    theirs = torchvision_scores(torch, net, pixels)
    # float32 sums over at most ~10^4 terms of unit size: relative error well under 1e-3.
    assert np.abs(ours - theirs).max() <= 1e-3 * np.abs(theirs).max()


def test_without_the_auxiliary_head(torch, tmp_path, capsys):
    net = twin(torch, "fcn", aux=False)
    out, weights = convert(torch, tmp_path, capsys, net.state_dict())
    assert "without an auxiliary head" in out
    model, metadata = model_from_weights(weights, with_metadata=True)
    assert metadata["aux"] is False and model.aux_classifier is None
    assert not any(k.startswith("aux_") for k in model.state_dict())


def _state(torch, kind="fcn"):
    return {k: v.numpy() for k, v in twin(torch, kind).state_dict().items()}


def _renamed(state, old, new):
    return {(new if k == old else k): v for k, v in state.items()}


@pytest.mark.parametrize("change, message", [
    (lambda s: {**s, "backbone.bn1.num_batches_tracked": np.float64(7.0)},
     "num_batches_tracked int64"),
    (lambda s: {**s, "backbone.bn1.running_mean": s["backbone.bn1.running_mean"].astype(int)},
     "backbone.bn1.running_mean is int64"),
    (lambda s: _renamed(s, "backbone.layer2.0.conv1.weight", "backbone.layer2.0.conv9.weight"),
     "missing backbone.layer2.0.conv1.weight; unexpected backbone.layer2.0.conv9.weight"),
    (lambda s: {**s, "backbone.layer1.0.conv2.weight": s["backbone.layer1.0.conv3.weight"]},
     "wrong shape: backbone.layer1.0.conv2.weight (16, 4, 1, 1), expected (4, 4, 3, 3)"),
    (lambda s: {k: v for k, v in s.items() if not k.startswith("classifier.4")},
     "no score layer classifier.4.weight"),
    (lambda s: {k: v for k, v in s.items() if not k.startswith("classifier.")},
     "a ResNet backbone (backbone.conv1.weight) without a head"),
], ids=["float-counter", "int-running-mean", "renamed-key", "wrong-layer", "no-score",
        "no-head"])
def test_state_dicts_that_do_not_fit_are_refused_naming_the_keys(torch, change, message):
    with pytest.raises(ConversionError) as caught:
        convert_state(change(_state(torch)))
    assert message in str(caught.value)


def test_arch_must_fit_the_layout(torch):
    with pytest.raises(ConversionError, match="they are torchvision FCN-ResNet50's"):
        convert_state(_state(torch), arch="deeplabv3_resnet50")
    assert convert_state(_state(torch), arch="fcn_resnet50").arch == "fcn_resnet50"


def test_weight_files_accept_only_the_int64_counter(tmp_path):
    arrays = {"bn.weight": np.ones(3, np.float32), "bn.num_batches_tracked": np.int64(7)}
    write_weights(tmp_path / "ok.npz", arrays)
    assert read_weights(tmp_path / "ok.npz").metadata["dtype"] == "float32"
    for name, bad in [("bn.num_batches_tracked", np.float32(7)),
                      ("bn.num_batches_tracked", np.int32(7)),
                      ("bn.num_batches_tracked", np.zeros(1, np.int64)),
                      ("bn.steps", np.int64(7))]:
        write_weights(tmp_path / "bad.npz", {**arrays, name: bad})
        with pytest.raises(WeightsError, match=name):
            read_weights(tmp_path / "bad.npz")


def test_checkpoints_hold_batch_norm_buffers(tmp_path):
    model = FCNResNet50(n_class=3, width=1 / 32, rng=0)
    model.backbone.bn1.num_batches_tracked.data = np.int64(5)
    model.backbone.bn1.running_mean.data = np.full_like(model.backbone.bn1.running_mean.data, 2)
    save_checkpoint(tmp_path / "c.npz", model, SGD(model.parameters(), lr=0.1), 3)
    fresh = FCNResNet50(n_class=3, width=1 / 32, rng=1)
    load_checkpoint(tmp_path / "c.npz", fresh, SGD(fresh.parameters(), lr=0.1))
    for (name, a), (_, b) in zip(model.named_state(), fresh.named_state()):
        assert a.data.dtype == b.data.dtype and np.array_equal(a.data, b.data), name
    model.backbone.bn1.num_batches_tracked.data = np.float64(5)
    save_checkpoint(tmp_path / "c.npz", model, SGD(model.parameters(), lr=0.1), 3)
    with pytest.raises(CheckpointError, match="num_batches_tracked"):
        load_checkpoint(tmp_path / "c.npz", fresh)


@pytest.mark.parametrize("arch, count", [("fcn_resnet50", 35_322_218),
                                         ("deeplabv3_resnet50", 42_004_074)])
def test_width_1_has_torchvisions_parameter_count(arch, count):
    """torchvision's weights record these counts (their meta "num_params"), aux included."""
    from minifcn.models import RESNET_MODELS

    model = RESNET_MODELS[arch](n_class=21, aux=True, init="zeros")
    assert sum(p.data.size for p in model.parameters()) == count


def test_evaluate_takes_a_resnet_weight_file(tmp_path, capsys):
    from minifcn.data.shapes import write_voc
    from minifcn.io import save_weights

    write_voc(tmp_path / "voc", {"val": 2}, size=(40, 48), seed=3)
    save_weights(tmp_path / "w.npz", FCNResNet50(n_class=4, width=1 / 32, rng=0))
    assert cli.main(["evaluate", "--weights", str(tmp_path / "w.npz"), "--data-dir",
                     str(tmp_path / "voc"), "--split", "val"]) == 0
    out = capsys.readouterr().out
    assert "(val, 2 images)" in out and "mean IoU" in out and "triangle" in out
