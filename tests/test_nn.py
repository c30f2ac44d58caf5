"""Tests of minifcn.nn: Parameter, Module's registry, modes, devices, state dicts; Conv2d."""
import importlib.util

import numpy as np
import pytest

from minifcn.backend import INSTALL_HINT, asnumpy, cupy_available
from minifcn.nn import Conv2d, Module, Parameter
from minifcn.ops import conv2d_backward, conv2d_forward


class Inner(Module):
    def __init__(self):
        super().__init__()
        self.w = Parameter(np.ones((2, 3)))
        self.v = Parameter(np.zeros(3), requires_grad=False)


class Outer(Module):
    """Parameters and submodules interleaved, to pin down the naming order."""

    def __init__(self):
        super().__init__()
        self.a = Parameter(np.ones(2))
        self.inner = Inner()
        self.b = Parameter(np.ones(1))
        self.conv = Conv2d(3, 2, 1, rng=0)
        self.scalar = 3                  # neither a Parameter nor a Module: ignored


OUTER_NAMES = ["a", "b", "inner.w", "inner.v", "conv.weight", "conv.bias"]


def test_parameter_basics():
    p = Parameter([1.0, 2.0])
    assert isinstance(p.data, np.ndarray) and p.shape == (2,) and p.dtype == np.float64
    assert p.grad is None and p.requires_grad is True and p.device == "cpu"
    assert repr(p) == "Parameter(shape=(2,), dtype=float64, device=cpu)"


def test_accumulate_adds_and_copies_the_first_gradient():
    p = Parameter(np.zeros(3))
    g = np.array([1.0, 2.0, 3.0])
    p.accumulate(g)
    g[0] = 100.0                         # the caller's array is not kept
    p.accumulate(np.ones(3))
    np.testing.assert_array_equal(p.grad, [2.0, 3.0, 4.0])
    p.accumulate(None)
    np.testing.assert_array_equal(p.grad, [2.0, 3.0, 4.0])
    with pytest.raises(ValueError, match=r"gradient of shape \(2,\) does not match .* \(3,\)"):
        p.accumulate(np.ones(2))


def test_frozen_parameter_accumulate_is_a_no_op():
    p = Parameter(np.zeros(3), requires_grad=False)
    p.accumulate(np.ones(3))
    assert p.grad is None
    assert "requires_grad=False" in repr(p)


def test_named_parameters_follow_assignment_order_with_dotted_names():
    model = Outer()
    names = [name for name, _ in model.named_parameters()]
    assert names == OUTER_NAMES
    assert model.parameters() == [p for _, p in model.named_parameters()]
    assert model.parameters()[0] is model.a and model.parameters()[2] is model.inner.w
    assert [name for name, _ in model.named_modules()] == ["", "inner", "conv"]
    deep = Module()
    deep.outer = model
    assert [name for name, _ in deep.named_parameters()] == ["outer." + n for n in OUTER_NAMES]


def test_names_match_torch_convention(torch):
    class TorchInner(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(2, 3))
            self.v = torch.nn.Parameter(torch.zeros(3), requires_grad=False)

    class TorchOuter(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Parameter(torch.ones(2))
            self.inner = TorchInner()
            self.b = torch.nn.Parameter(torch.ones(1))
            self.conv = torch.nn.Conv2d(3, 2, 1)

    assert [name for name, _ in TorchOuter().named_parameters()] == OUTER_NAMES
    assert list(TorchOuter().state_dict()) == list(Outer().state_dict())


def test_shared_parameters_and_modules_appear_once():
    model = Outer()
    model.alias = model.a                # the same Parameter under a second name
    model.again = model.inner            # the same Module under a second name
    names = [name for name, _ in model.named_parameters()]
    assert names == OUTER_NAMES
    assert len(model.parameters()) == len({id(p) for p in model.parameters()}) == 6


def test_zero_grad_train_eval_are_recursive():
    model = Outer()
    for p in model.parameters():
        p.grad = np.ones(p.shape)
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    assert model.eval() is model
    assert [m.training for _, m in model.named_modules()] == [False, False, False]
    assert model.train() is model
    assert all(m.training for _, m in model.named_modules())


def test_to_dtype_casts_parameters_and_gradients():
    model = Outer()
    model.conv.weight.grad = np.ones(model.conv.weight.shape, dtype=np.float32)
    assert model.to(dtype=np.float32) is model
    assert {p.dtype for p in model.parameters()} == {np.dtype(np.float32)}
    model.to(dtype=np.float64)
    assert {p.dtype for p in model.parameters()} == {np.dtype(np.float64)}
    assert model.conv.weight.grad.dtype == np.float64
    assert model.conv.bias.grad is None
    with pytest.raises(TypeError, match="float32 or float64, got int32"):
        model.to(dtype=np.int32)


def test_to_device():
    model = Outer()
    weight = model.conv.weight.data
    model.to(device="cpu")
    assert model.conv.weight.data is weight and model.conv.weight.device == "cpu"
    with pytest.raises(ValueError, match="'gpu'"):
        Module().to(device="gpu")         # checked even with no parameter to move
    if cupy_available():
        return
    with pytest.raises(RuntimeError) as info:
        model.to(device="cuda")
    if importlib.util.find_spec("cupy") is None:
        assert 'pip install "minifcn[gpu]"' in str(info.value)
        assert INSTALL_HINT in str(info.value)


def test_state_dict_holds_the_parameter_arrays():
    model = Outer()
    state = model.state_dict()
    assert list(state) == OUTER_NAMES
    assert all(state[name] is p.data for name, p in model.named_parameters())


def test_load_state_dict_roundtrip_keeps_dtype_and_copies():
    source, target = Conv2d(3, 2, 3, rng=1), Conv2d(3, 2, 3, rng=2)
    state = {k: v.astype(np.float64) for k, v in source.state_dict().items()}
    assert target.load_state_dict(state) == ([], [])
    for name, p in target.named_parameters():
        assert p.dtype == np.float32
        np.testing.assert_array_equal(p.data, source.state_dict()[name])
        assert not np.shares_memory(p.data, state[name])


def test_load_state_dict_names_every_bad_key():
    model = Outer()
    state = dict(model.state_dict())
    del state["inner.w"], state["b"]
    state["conv.weight"] = np.zeros((9, 3, 1, 1))
    state["extra.bias"] = np.zeros(2)
    with pytest.raises(ValueError) as info:
        model.load_state_dict(state)
    message = str(info.value)
    for part in ["Outer", "'inner.w'", "'b'", "'extra.bias'", "conv.weight",
                 "(2, 3, 1, 1)", "(9, 3, 1, 1)"]:
        assert part in message
    with pytest.raises(ValueError, match="conv.weight"):   # a wrong shape is never skipped
        model.load_state_dict(state, strict=False)


def test_load_state_dict_lists_four_of_each_kind_and_counts_the_rest():
    model = Outer()
    state = {f"stray{i}": np.zeros(1) for i in range(10)}        # every key wrong
    with pytest.raises(ValueError) as info:
        model.load_state_dict(state)
    message = str(info.value)
    assert message.count("missing key '") == min(4, len(OUTER_NAMES))
    assert message.count("unexpected key '") == 4 and "and 6 more" in message


def test_load_state_dict_not_strict_returns_missing_and_unexpected():
    model = Outer()
    state = {"a": np.full(2, 7.0), "nope": np.zeros(1)}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert missing == [n for n in OUTER_NAMES if n != "a"] and unexpected == ["nope"]
    np.testing.assert_array_equal(model.a.data, [7.0, 7.0])


def test_backward_before_forward_is_a_clear_error():
    with pytest.raises(RuntimeError, match=r"Conv2d.backward\(\) was called before forward"):
        Conv2d(3, 2, 3).backward(np.zeros((1, 2, 1, 1), dtype=np.float32))
    with pytest.raises(NotImplementedError, match="Module must define forward"):
        Module()(np.zeros(1))


def test_repr_is_readable():
    conv = Conv2d(3, 4, 3, stride=2, padding=1, bias=False)
    assert repr(conv) == ("Conv2d(3, 4, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), "
                          "dilation=(1, 1), bias=False)")
    text = repr(Outer())
    assert text.startswith("Outer(\n  (inner): Inner()\n  (conv): Conv2d(3, 2, ")
    assert text.endswith("\n)")


def test_conv2d_matches_the_op_and_accumulates(xp, rng):
    conv = Conv2d(3, 4, 3, padding=1, dtype=np.float64, rng=0)
    conv.to(device="cpu" if xp is np else "cuda")
    x = xp.asarray(rng.standard_normal((2, 3, 5, 5)))
    dy = xp.asarray(rng.standard_normal((2, 4, 5, 5)))
    want_y, cache = conv2d_forward(x, conv.weight.data, conv.bias.data, 1, 1, 1)
    _, dweight, dbias = conv2d_backward(dy, cache)
    assert (conv(x) == want_y).all()
    conv.backward(dy)
    conv.backward(dy)
    np.testing.assert_allclose(asnumpy(conv.weight.grad), asnumpy(2 * dweight), rtol=1e-12)
    np.testing.assert_allclose(asnumpy(conv.bias.grad), asnumpy(2 * dbias), rtol=1e-12)


def test_conv2d_shapes_init_and_no_bias():
    conv = Conv2d(3, 4, (3, 2), rng=0)
    assert conv.weight.shape == (4, 3, 3, 2) and conv.bias.shape == (4,)
    assert conv.weight.dtype == np.float32
    bound = 1 / np.sqrt(3 * 3 * 2)
    assert np.abs(conv.weight.data).max() <= bound and np.abs(conv.weight.data).max() > bound / 2
    conv = Conv2d(3, 4, 3, bias=False)
    assert conv.bias is None and [n for n, _ in conv.named_parameters()] == ["weight"]
    conv.forward(np.ones((1, 3, 3, 3), dtype=np.float32))
    assert conv.backward(np.ones((1, 4, 1, 1), dtype=np.float32)).shape == (1, 3, 3, 3)
