"""float32 stays float32 end to end: no layer of a whole FCN silently upcasts.

Every leaf module's forward and backward is wrapped to record the dtype of what it takes
and gives; one training step of each FCN variant in float32 (and float64) must record only
that dtype, and every parameter gradient must have it too. Upcasting to float64 doubles the
memory traffic of a bandwidth-bound layer, so it is a performance bug as much as a
correctness one.
"""
import numpy as np
import pytest

from minifcn.backend import asnumpy
from minifcn.models import ARCHITECTURES
from minifcn.ops import softmax_cross_entropy_backward, softmax_cross_entropy_forward


def record_dtypes(model, seen):
    """Wrap every leaf module's forward/backward to append (name, what, dtype) to ``seen``."""
    for name, module in model.named_modules():
        if any(True for _ in module.named_children()):
            continue                                   # containers: their leaves are wrapped

        def wrap(method, what, name=name):
            def wrapped(*args):
                for a in args:
                    if hasattr(a, "dtype"):
                        seen.append((name, what + " in", a.dtype))
                out = method(*args)
                if hasattr(out, "dtype"):
                    seen.append((name, what + " out", out.dtype))
                return out
            return wrapped

        module.forward = wrap(module.forward, "forward")
        module.backward = wrap(module.backward, "backward")


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_a_training_step_keeps_the_dtype_in_every_layer(xp, arch, dtype):
    model = ARCHITECTURES[arch](n_class=3, width=1 / 32, dropout=0.5, dtype=dtype, rng=0)
    model.to("cuda" if xp.__name__ == "cupy" else "cpu")
    seen = []
    record_dtypes(model, seen)
    x = xp.asarray(np.random.default_rng(0).standard_normal((1, 3, 37, 45)).astype(dtype))
    target = xp.asarray(np.random.default_rng(1).integers(0, 3, (1, 37, 45)))
    scores = model(x)
    loss, cache = softmax_cross_entropy_forward(scores, target)
    dscores, _, _ = softmax_cross_entropy_backward(xp.asarray(1.0, dtype=dtype), cache)
    dx = model.backward(dscores)
    assert len({name for name, _, _ in seen}) >= 20          # every leaf was seen
    upcast = [(name, what, str(d)) for name, what, d in seen if d != dtype]
    assert not upcast, f"layers that changed the dtype: {upcast[:5]}"
    for value in (scores, loss, dscores, dx):
        assert value.dtype == dtype
    grads = {n: p.grad.dtype for n, p in model.named_parameters() if p.grad is not None}
    assert grads and set(grads.values()) == {np.dtype(dtype)}, grads
    assert np.isfinite(asnumpy(loss))


def test_the_recorder_sees_a_planted_upcast():
    """The check can fail: a ReLU that returns float64 is recorded by name, and the next
    convolution refuses the mixed dtypes (its float32 weight) rather than upcasting too."""
    model = ARCHITECTURES["fcn32s"](n_class=3, width=1 / 32, dropout=0.0, rng=0)
    original = model.relu1_1.forward
    model.relu1_1.forward = lambda x: original(x).astype(np.float64)
    seen = []
    record_dtypes(model, seen)
    with pytest.raises(TypeError, match="dtype"):
        model(np.zeros((1, 3, 16, 16), np.float32))
    assert ("relu1_1", "forward out", np.dtype(np.float64)) in seen
