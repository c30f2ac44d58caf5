"""Bad input that needs more than a table row: arrays on two devices, non-finite logits, and
operations that need more memory than there is.

* Devices. Without a GPU the checks still run: a stand-in ``cupy`` module whose ``ndarray``
  is a NumPy subclass with ``.device.id == 0`` makes ``minifcn.backend`` see "cuda:0"
  arrays. The same refusals are checked with real CuPy arrays where a GPU is present.
* Non-finite logits propagate through the loss exactly as in PyTorch (documented in
  ``softmax_cross_entropy_forward``); the training loop's stop on a non-finite loss is
  tested in test_train.py.
* Memory: an allocation the machine refuses (a monkeypatched allocator raising
  MemoryError) or a result larger than the available memory is reported as
  ``WorkspaceMemoryError`` (a MemoryError) naming the operation, the sizes and the limit.
"""
import math
import sys
import types

import numpy as np
import pytest

from minifcn import backend, memory, metrics, nn, ops, optim
from minifcn.backend import device_of, to_device
from minifcn.models import FCN8s


# --- Devices --------------------------------------------------------------------------------

class _StandInGpuArray(np.ndarray):
    """A NumPy array that ``minifcn.backend`` takes for a CuPy array on GPU 0."""
    device = types.SimpleNamespace(id=0)


@pytest.fixture
def on_gpu(monkeypatch):
    """``on_gpu(a)``: ``a`` as a stand-in "cuda:0" array, while a stand-in cupy is imported."""
    backend.cupy_available()                 # settle its cached answer before the stand-in
    stand_in = types.ModuleType("cupy")
    stand_in.ndarray = _StandInGpuArray
    stand_in.random = types.SimpleNamespace(Generator=type("Generator", (), {}))
    monkeypatch.setitem(sys.modules, "cupy", stand_in)
    return lambda a: np.asarray(a).view(_StandInGpuArray)


def f32(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


X, W, B = f32(2, 3, 8, 8), f32(4, 3, 3, 3), f32(4)
LOGITS, TARGET = f32(2, 3, 4, 4), np.zeros((2, 4, 4), np.int64)


def _model_on(device_array, model=None):
    """A tiny FCN-8s whose parameters were all put through ``device_array``."""
    model = model or FCN8s(n_class=3, width=1 / 64, rng=0)
    for p in model.parameters():
        p.data = device_array(p.data)
    return model


def _optimiser_with_grad_on(device_array):
    p = nn.Parameter(f32(3))
    p.grad = device_array(f32(3))
    return optim.SGD([p], lr=0.1)


DEVICE_CASES = [
    pytest.param(lambda g: ops.conv2d_forward(X, g(W)),
                 r"arrays must be on one device, but x is on cpu, weight is on cuda:0; move "
                 r"them with minifcn.backend.to_device", id="conv2d-weight"),
    pytest.param(lambda g: ops.conv2d_forward(g(X), g(W), B),
                 r"x is on cuda:0, weight is on cuda:0, bias is on cpu", id="conv2d-bias"),
    pytest.param(lambda g: ops.conv2d_backward(g(f32(2, 4, 8, 8)),
                                               ops.conv2d_forward(X, W, padding=1)[1]),
                 r"dy is on cuda:0, x is on cpu", id="conv2d-dy"),
    pytest.param(lambda g: ops.conv_transpose2d_forward(g(X), f32(3, 4, 4, 4), stride=2),
                 r"x is on cuda:0, weight is on cpu", id="convT-weight"),
    pytest.param(lambda g: ops.max_pool2d_backward(g(f32(2, 3, 4, 4)),
                                                   ops.max_pool2d_forward(X, 2)[1]),
                 r"dy is on cuda:0, cache is on cpu", id="pool-dy"),
    pytest.param(lambda g: ops.upsample_bilinear2d_backward(
        g(f32(2, 3, 16, 16)), ops.upsample_bilinear2d_forward(X, scale_factor=2)[1]),
        r"dy is on cuda:0, cache is on cpu", id="upsample-dy"),
    pytest.param(lambda g: ops.relu_backward(g(X), ops.relu_forward(X)[1]),
                 r"dy is on cuda:0, x is on cpu", id="relu-dy"),
    pytest.param(lambda g: ops.dropout_backward(g(X), ops.dropout_forward(X, 0.5, rng=0)[1]),
                 r"dy is on cuda:0, x is on cpu", id="dropout-dy"),
    pytest.param(lambda g: ops.softmax_cross_entropy_forward(LOGITS, g(TARGET)),
                 r"logits is on cpu, target is on cuda:0", id="loss-target"),
    pytest.param(lambda g: ops.softmax_cross_entropy_forward(LOGITS, TARGET, g(f32(3))),
                 r"logits is on cpu, target is on cpu, weight is on cuda:0", id="loss-weight"),
    pytest.param(lambda g: ops.softmax_cross_entropy_backward(
        g(np.ones((), np.float32)), ops.softmax_cross_entropy_forward(LOGITS, TARGET)[1]),
        r"dloss is on cuda:0, logits is on cpu", id="loss-dloss"),
    pytest.param(lambda g: nn.Conv2d(3, 4, 3)(g(X)),
                 r"x is on cuda:0, weight is on cpu", id="Conv2d-module"),
    pytest.param(lambda g: _model_on(g)(f32(1, 3, 16, 16)),
                 r"x is on cpu but the model \(fcn8s\) is on cuda:0; move one of them: "
                 r"minifcn.backend.to_device\(x, 'cuda:0'\) or model.to\('cpu'\)",
                 id="fcn-host-input"),
    pytest.param(lambda g: FCN8s(n_class=3, width=1 / 64, rng=0)(g(f32(1, 3, 16, 16))),
                 r"x is on cuda:0 but the model \(fcn8s\) is on cpu", id="fcn-gpu-input"),
    pytest.param(lambda g: _optimiser_with_grad_on(g).step(),
                 r"parameter is on cpu, grad is on cuda:0", id="sgd-grad"),
    pytest.param(lambda g: metrics.ConfusionMatrix(3).update(g(TARGET), TARGET),
                 r"pred is on cuda:0, target is on cpu", id="confusion-matrix"),
]


@pytest.mark.parametrize("call, match", DEVICE_CASES)
def test_arrays_on_two_devices_are_refused_by_name(on_gpu, call, match):
    with pytest.raises(ValueError, match=match):
        call(on_gpu)


def test_arrays_on_two_real_devices_are_refused_by_name(xp):
    """With CuPy, a GPU model refuses host input and a GPU weight a host x; with NumPy alone
    (one device) the same calls run."""
    device = device_of(xp.zeros(1))
    model = FCN8s(n_class=3, width=1 / 64, rng=0).to(device)
    x_host = f32(1, 3, 16, 16)
    if xp is np:
        assert model(x_host).shape == (1, 3, 16, 16)
        assert ops.conv2d_forward(X, to_device(W, device))[0].shape == (2, 4, 6, 6)
        return
    with pytest.raises(ValueError, match=rf"x is on cpu but the model \(fcn8s\) is on {device}"):
        model(x_host)
    with pytest.raises(ValueError, match=rf"x is on cpu, weight is on {device}"):
        ops.conv2d_forward(X, to_device(W, device))


# --- Non-finite logits -------------------------------------------------------------------------

NON_FINITE = {                 # where pixel (0, 0, 0), target 1, gets which logits
    "nan": (0, np.nan),
    "plus-inf": (0, np.inf),
    "minus-inf-other-class": (0, -np.inf),
    "minus-inf-target-class": (1, -np.inf),
    "minus-inf-every-class": (slice(None), -np.inf),
}


@pytest.mark.filterwarnings("ignore::RuntimeWarning")          # inf - inf, by design
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("pattern", list(NON_FINITE) + ["nan-at-ignored-pixel"])
def test_non_finite_logits_propagate_as_in_torch(torch, pattern, reduction):
    """Loss and gradient equal PyTorch's, NaN for NaN and inf for inf, in float64."""
    logits = np.random.default_rng(1).standard_normal((2, 3, 2, 2))
    target = np.array([[[1, 2], [0, 255]], [[2, 2], [1, 0]]])
    if pattern == "nan-at-ignored-pixel":
        logits[0, 1, 1, 1] = np.nan                               # target there is 255
    else:
        classes, value = NON_FINITE[pattern]
        logits[0, classes, 0, 0] = value
    loss, cache = ops.softmax_cross_entropy_forward(logits, target, reduction=reduction)
    dloss = np.ones(target.shape) if reduction == "none" else 1.0
    dlogits = ops.softmax_cross_entropy_backward(dloss, cache)[0]
    t_logits = torch.tensor(logits, requires_grad=True)
    t_loss = torch.nn.functional.cross_entropy(t_logits, torch.tensor(target), ignore_index=255,
                                               reduction=reduction)
    t_loss.backward(torch.ones_like(t_loss))
    np.testing.assert_allclose(loss, t_loss.detach().numpy(), rtol=1e-12)   # NaN == NaN
    np.testing.assert_allclose(dlogits, t_logits.grad.numpy(), rtol=1e-10, atol=1e-15)


# --- Memory -----------------------------------------------------------------------------------

@pytest.fixture
def refusing_allocator(monkeypatch):
    """numpy.empty and numpy.zeros refuse anything of ``refusing_allocator.above`` bytes or
    more, as an exhausted machine would; smaller requests are served."""
    class Refusal:
        above = 1 << 20
    for name in ("empty", "zeros"):
        real = getattr(np, name)

        def allocate(shape, dtype=float, *args, _real=real, **kwargs):
            nbytes = math.prod(np.atleast_1d(shape)) * np.dtype(dtype).itemsize
            if nbytes >= Refusal.above:
                raise MemoryError(f"Unable to allocate {nbytes} bytes")
            return _real(shape, dtype, *args, **kwargs)
        monkeypatch.setattr(np, name, allocate)
    memory.clear()
    with memory.limited(None):
        yield Refusal
    memory.clear()


MEMORY_CASES = [
    pytest.param(lambda: ops.conv2d_forward(f32(1, 3, 64, 64), f32(80, 3, 3, 3), padding=1),
                 r"conv2d forward \(weight \(80, 3, 3, 3\), im2col image \(1, 3, 64, 64\).*"
                 r"needs 1.25 MiB for its result \(1, 80, 64, 64\) float32, more than the "
                 r"machine can give \(Unable to allocate", id="conv2d-output"),
    pytest.param(lambda: ops.conv2d_forward(f32(1, 64, 32, 32), f32(1, 64, 3, 3), padding=1),
                 r"im2col for conv2d forward \(weight \(1, 64, 3, 3\).* needs a [\d.]+ MiB "
                 r"buffer, more than the machine can give", id="conv2d-im2col-scratch"),
    pytest.param(lambda: ops.conv_transpose2d_forward(f32(1, 80, 32, 32), f32(80, 80, 4, 4),
                                                      stride=2, padding=1),
                 r"conv_transpose2d forward .*needs 1.25 MiB for its result \(1, 80, 64, 64\) "
                 r"float32",
                 id="convT-output"),
    pytest.param(lambda: ops.im2col(f32(1, 64, 32, 32), 3, padding=1),
                 r"im2col of x \(1, 64, 32, 32\) needs 2.25 MiB for its result "
                 r"\(64, 3, 3, 1, 32, 32\)", id="im2col-output"),
]


@pytest.mark.parametrize("call, match", MEMORY_CASES)
def test_a_refused_allocation_names_the_op_sizes_and_limit(refusing_allocator, call, match):
    with pytest.raises(memory.WorkspaceMemoryError, match=match) as caught:
        call()
    message = str(caught.value)
    assert isinstance(caught.value, MemoryError)
    assert "set_workspace_limit" in message and memory.ENV_VARIABLE in message


def test_a_refused_input_gradient_names_the_backward(refusing_allocator):
    x, w = f32(1, 3, 128, 128), f32(2, 3, 3, 3)                  # dx: 192 KiB, y: 128 KiB
    refusing_allocator.above = 1 << 30
    y, cache = ops.conv2d_forward(x, w, padding=1)
    refusing_allocator.above = 150 * 1024                         # y would fit, dx does not
    with pytest.raises(memory.WorkspaceMemoryError,
                       match=r"conv2d backward \(dx\) .*for its result \(1, 3, 128, 128\) "
                             r"float32.*use a smaller batch or image"):
        ops.conv2d_backward(np.ones_like(y), cache)


def test_a_result_larger_than_the_available_memory_is_refused_before_allocating(monkeypatch):
    """Where overcommit would let the allocation through and the kernel kill the process
    later, the size is compared with MemAvailable first."""
    monkeypatch.setattr(memory, "_available_memory", lambda: 1 << 20)
    monkeypatch.setattr(memory, "_CHECK_MEMORY_ABOVE", 0)
    with pytest.raises(memory.WorkspaceMemoryError,
                       match=r"conv2d forward .*needs 1.25 MiB for its result "
                             r"\(1, 80, 64, 64\) float32, but only 1.00 MiB of memory is "
                             r"available; .*MINIFCN_WORKSPACE_LIMIT"):
        ops.conv2d_forward(f32(1, 3, 64, 64), f32(80, 3, 3, 3), padding=1)


def test_the_advised_limit_lets_the_scratch_through(refusing_allocator):
    """The advice works: under a limit the im2col comes in chunks the machine can give, and
    the result is the one an unrefused allocation gives."""
    x, w = f32(1, 64, 32, 32), f32(1, 64, 3, 3)                  # im2col: 2.25 MiB at once
    refusing_allocator.above = 1 << 30
    expected, _ = ops.conv2d_forward(x, w, padding=1)
    refusing_allocator.above = 1 << 20
    memory.clear()
    with memory.limited("512KiB"):
        y, _ = ops.conv2d_forward(x, w, padding=1)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
