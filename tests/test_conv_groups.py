"""Grouped and depthwise conv2d through the public op and the layer: PyTorch's results in
float64 (forward and autograd backward, under both algorithms), gradcheck of the layer, only
the grouped fast path taking them, and errors that name ``groups``. The reference itself is
checked against the naive loop in test_reference.py."""
import numpy as np
import pytest

from minifcn import ops
from minifcn.gradcheck import check_module
from minifcn.nn import Conv2d
from minifcn.ops import conv2d_backward, conv2d_forward, dispatch

from helpers import rel_error

CASES = {  # id: (C, F, groups, kernel, stride, padding, dilation)
    "groups2": (4, 6, 2, 3, 1, 1, 1),
    "depthwise-s2-d2": (3, 3, 3, 3, 2, 2, 2),
}


@pytest.mark.parametrize("algorithm", ["auto", "reference"])
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_grouped_conv2d_matches_torch(xp, torch, rng, case, algorithm):
    C, F, groups, kernel, stride, padding, dilation = case
    x, w, b = (rng.standard_normal(s) for s in ((2, C, 7, 6), (F, C // groups, kernel, kernel),
                                                 (F,)))
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = torch.nn.functional.conv2d(tx, tw, tb, stride, padding, dilation, groups)
    dy = rng.standard_normal(tuple(ty.shape))
    ty.backward(torch.from_numpy(dy))
    with ops.using(algorithm):
        y, cache = conv2d_forward(*(xp.asarray(a) for a in (x, w, b)), stride=stride,
                                  padding=padding, dilation=dilation, groups=groups)
        grads = conv2d_backward(xp.asarray(dy), cache)
    assert rel_error(y, ty.detach().numpy()) < 1e-10
    for got, want in zip(grads, (tx.grad, tw.grad, tb.grad)):
        assert rel_error(got, want.numpy()) < 1e-10


def test_grouped_conv2d_layer_passes_gradcheck(rng):
    layer = Conv2d(4, 6, 3, padding=1, groups=2, dtype=np.float64, rng=0)
    assert layer.weight.shape == (6, 2, 3, 3)
    assert "groups=2" in repr(layer) and "Conv2d(4, 6" in repr(layer)
    assert check_module(layer, rng.standard_normal((2, 4, 5, 5))).passed


@pytest.mark.parametrize("x_shape, w_shape, options", [
    ((1, 256, 16, 16), (8, 128, 3, 3), {"padding": 1}),             # Winograd's shape
    ((1, 4, 6, 5), (4, 1, 3, 3), {"padding": 10}),                   # the border's
    ((2, 8, 9, 8), (8, 2, 1, 1), {}),                                # pointwise
    ((1, 6, 9, 9), (6, 3, 3, 3), {"stride": 2, "dilation": 2}),
], ids=["winograd-shape", "border-shape", "pointwise", "s2-d2"])
def test_only_the_grouped_path_takes_a_grouped_convolution(x_shape, w_shape, options):
    """Every other conv2d path still refuses groups (it would read the wrong channels); on
    CuPy the reference runs."""
    groups = x_shape[1] // w_shape[1]
    report = ops.explain("conv2d", x_shape, w_shape, groups=groups, **options)
    assert set(report.choices.values()) == {"grouped"}
    for piece in ("conv2d.forward", "conv2d.input_grad", "conv2d.weight_grad"):
        taking = [p.name for p in dispatch.paths(piece) if p.applies(report.call)]
        assert taking == ["grouped"], piece
    on_gpu = ops.explain("conv2d", x_shape, w_shape, groups=groups, device="cuda", **options)
    assert set(on_gpu.choices.values()) == {"reference"}
    assert ops.explain("conv2d", (1, 256, 16, 16), (8, 256, 3, 3),
                       padding=1).choices["conv2d.forward"] == "winograd"


@pytest.mark.parametrize("groups, w_shape, message", [
    (0, (6, 4, 3, 3), "groups must be positive, got 0"),
    (3, (6, 1, 3, 3), r"groups=3 must divide both the input channels \(4\)"),
    (2, (6, 4, 3, 3), r"with groups=2 the weight must be \(F, C/G, KH, KW\) = \(6, 2, KH, KW\)"),
    (2.0, (6, 2, 3, 3), "groups must be an int"),
])
def test_bad_groups_are_named(groups, w_shape, message):
    x = np.zeros((1, 4, 5, 5))
    with pytest.raises((ValueError, TypeError), match=message):
        conv2d_forward(x, np.zeros(w_shape), groups=groups)


def test_layer_refuses_groups_that_do_not_divide():
    with pytest.raises(ValueError, match=r"groups=2 must divide in_channels \(3\)"):
        Conv2d(3, 4, 3, groups=2)
