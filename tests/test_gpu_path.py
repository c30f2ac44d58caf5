"""minifcn's CuPy path end to end: training steps, the demo, ``predict`` and ``bench ops``
with ``--device cuda``.

Where a GPU is usable these run on it; elsewhere on the CuPy emulation (tests/cupy_emulation),
which refuses what CuPy would refuse: a NumPy-only name or keyword, a host array in a device
operation, a device array handed to NumPy or Pillow without ``asnumpy``.
MINIFCN_EMULATE_GPU=0 skips them where no GPU is usable.
"""
import os

import numpy as np
import pytest

import cupy_emulation
from PIL import Image

from minifcn import cli, optim
from minifcn.backend import asnumpy, cupy_available, to_device
from minifcn.demo import run_demo
from minifcn.inference import predict_with_confidence
from minifcn.models import DeepLabV3ResNet50, FCN8s, FCNResNet50, UNet
from minifcn.ops import softmax_cross_entropy_backward, softmax_cross_entropy_forward


@pytest.fixture
def gpu(request):
    """CuPy on a GPU where one is usable, else the CuPy emulation."""
    if cupy_available():
        import cupy
        return cupy
    if os.environ.get("MINIFCN_REQUIRE_GPU", "") not in ("", "0"):
        pytest.fail("MINIFCN_REQUIRE_GPU is set but CuPy cannot use a GPU here")
    if os.environ.get("MINIFCN_EMULATE_GPU") == "0" or cupy_emulation.compiler() is None:
        pytest.skip("no GPU, and the CuPy emulation is switched off or has no C++ compiler")
    return request.getfixturevalue("emulated_cupy")


def _train_steps(device):
    """Two steps of a width-1/16 FCN-8s on ``device``, SGD with momentum and weight decay on
    the trunk and Adam on the rest (both optimisers' state in use by the second step):
    (loss, parameters after)."""
    rng = np.random.default_rng(3)
    x = to_device(rng.standard_normal((1, 3, 32, 24)), device)
    target = rng.integers(0, 4, (1, 32, 24))
    target[0, :5] = 255                                   # ignored pixels
    target = to_device(target, device)
    model = FCN8s(n_class=4, width=1 / 16, rng=0, dtype="float64").to(device)
    trunk = [p for n, p in model.named_parameters() if n.startswith("conv")]
    head = [p for n, p in model.named_parameters() if not n.startswith("conv")]
    optimisers = [optim.SGD(trunk, lr=0.1, momentum=0.9, weight_decay=1e-4),
                  optim.Adam(head, lr=1e-3)]
    one = to_device(np.ones(()), device)
    for _ in range(2):
        for opt in optimisers:
            opt.zero_grad()
        loss, cache = softmax_cross_entropy_forward(model(x), target, ignore_index=255)
        model.backward(softmax_cross_entropy_backward(one, cache)[0])
        for opt in optimisers:
            opt.step()
    return float(loss), {n: asnumpy(p.data) for n, p in model.named_parameters()}


def test_fcn8s_training_steps_on_cuda_equal_numpy(gpu):
    loss_cpu, cpu = _train_steps("cpu")
    loss_gpu, on_gpu = _train_steps("cuda")
    assert loss_gpu == pytest.approx(loss_cpu, rel=1e-10)
    for name, value in cpu.items():                       # float64: rounding apart
        np.testing.assert_allclose(on_gpu[name], value, rtol=1e-9, atol=1e-12, err_msg=name)


SMALL_DEMO = {"size": (40, 40), "n_val": 2, "n_test": 2, "n_examples": 1, "batch_size": 1,
              "val_every": 2}


@pytest.mark.slow
def test_demo_then_predict_on_cuda(gpu, tmp_path, capsys):
    """The demo (what ``minifcn demo --device cuda`` runs, at a small size), then ``minifcn
    predict --device cuda`` on one of its samples: the same labels as on the CPU."""
    out = tmp_path / "demo"
    result = run_demo(out, device="cuda", iters=2, progress=False, echo=lambda *a: None,
                      **SMALL_DEMO)
    assert result.iterations == 2 and 0 <= result.metrics.mean_iou <= 1
    for name in ("metrics.txt", "model.npz", "last.npz", "curves.png", "log.csv"):
        assert (out / name).is_file(), name
    sample = sorted((out / "samples").glob("*.png"))[0]
    for device in ("cpu", "cuda"):
        status = cli.main(["predict", "--weights", str(out / "model.npz"), "--device", device,
                           "--out", str(tmp_path / device), str(sample)])
        assert status == 0, capsys.readouterr()
    written = sorted(p.name for p in (tmp_path / "cpu").glob("*.png"))
    assert written and written == sorted(p.name for p in (tmp_path / "cuda").glob("*.png"))
    for name in written:
        a, b = (np.asarray(Image.open(tmp_path / device / name)) for device in ("cpu", "cuda"))
        assert a.shape == b.shape and (a == b).mean() > 0.99, name   # float32: rare ties


def test_bench_ops_on_cuda(gpu, capsys):
    layers = ["conv1_1", "pool1", "fc6", "upscore2", "crop", "loss"]
    status = cli.main(["bench", "ops", "--device", "cuda", "--size", "48", "--width", "0.0625",
                       "--repeat", "1", "--warmup", "0", "--min-time", "0", "--no-torch",
                       "--no-progress", "--layers", *layers])
    printed = capsys.readouterr().out
    assert status == 0, printed
    for layer in layers:
        assert layer in printed, (layer, printed)


NEW_MODELS = {"fcn_resnet50": (FCNResNet50, {"width": 1 / 16}, (40, 44)),
              "deeplabv3_resnet50": (DeepLabV3ResNet50, {"width": 1 / 16}, (40, 44)),
              "unet": (UNet, {"base": 4, "depth": 2}, (44, 48))}


@pytest.mark.parametrize("arch", NEW_MODELS)
def test_resnets_and_unet_on_cuda_compute_what_they_compute_on_the_cpu(gpu, arch):
    """BatchNorm (its buffers moved too), concatenation, pooling to 1x1 and U-Net's mirrored
    border on the device: predict's labels and confidences, and a training step's gradients
    (auxiliary head included), equal to the CPU's in float64."""
    cls, options, hw = NEW_MODELS[arch]
    image = np.random.default_rng(0).integers(0, 256, (*hw, 3), dtype=np.uint8)
    x = np.random.default_rng(1).standard_normal((2, 3, *hw))
    results = {}
    for device in ("cpu", "cuda"):
        model = cls(n_class=4, dtype=np.float64, rng=0, **options).to(device)
        label, confidence = predict_with_confidence(model, image, "imagenet")
        y = model.train()(to_device(x, device))
        dy = to_device(np.ones(y.shape), device)
        if arch == "unet":
            model.backward(dy)
        else:
            model.backward(dy, to_device(np.ones(model.aux_output.shape), device))
        results[device] = [label, confidence] + [asnumpy(p.grad) for p in model.parameters()]
    assert np.array_equal(results["cpu"][0], results["cuda"][0])
    for a, b in zip(results["cpu"][1:], results["cuda"][1:]):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("arch", ["fcn_resnet50", "unet"])
def test_train_steps_with_aux_loss_or_label_crop_on_cuda_equal_numpy(gpu, arch):
    """Two train_step calls on the device (the auxiliary loss; U-Net's labels cropped at
    its offset): the losses and parameters equal the CPU's in float64."""
    from minifcn.train import train_step

    cls, options, hw = NEW_MODELS[arch]
    rng = np.random.default_rng(2)
    x, labels = rng.standard_normal((2, 3, *hw)), rng.integers(0, 4, (2, *hw))
    labels[:, :3] = 255
    results = {}
    for device in ("cpu", "cuda"):
        model = cls(n_class=4, dtype=np.float64, rng=0, **options).to(device)
        opt = optim.Adam(model.parameters(), lr=1e-3)
        losses = [float(train_step(model, opt, x, labels)) for _ in range(2)]
        results[device] = losses + [asnumpy(p.data) for p in model.parameters()]
    assert results["cuda"][:2] == pytest.approx(results["cpu"][:2], rel=1e-10)
    for a, b in zip(results["cpu"][2:], results["cuda"][2:]):
        np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-12)
