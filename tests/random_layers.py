"""Random layers with correct hand-written backward passes, for testing the gradient checker.

A :class:`Layer` is an elementwise chain of smooth maps on each input, a core, and a chain on
the core's output. The cores: a sum of products of several same-shaped inputs
(:class:`Products`), a matrix multiply along one axis (:class:`Matmul`) and minifcn's conv2d
pair (:class:`Conv`). Backward passes are written as a list of chain-rule *terms* per input
(:meth:`Layer.terms`), so that a test can drop one. ``cases(xp)`` draws a layer, its inputs
and a ``dy`` on NumPy or CuPy.
"""
from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes

from minifcn.backend import asnumpy, get_array_module
from minifcn.gradcheck import check_function
from minifcn.ops import conv2d_backward, conv2d_forward


# --- smooth elementwise maps: (f, df), df evaluated at the map's input --------------------

def _sigmoid(x):
    return 1 / (1 + get_array_module(x).exp(-x))


MAPS = {
    "tanh": (lambda x: get_array_module(x).tanh(x),
             lambda x: 1 - get_array_module(x).tanh(x) ** 2),
    "sin": (lambda x: get_array_module(x).sin(x), lambda x: get_array_module(x).cos(x)),
    "sigmoid": (_sigmoid, lambda x: _sigmoid(x) * (1 - _sigmoid(x))),
    "softplus": (lambda x: get_array_module(x).logaddexp(0, x), _sigmoid),
    "square": (lambda x: x * x, lambda x: 2 * x),
    "affine": (lambda x: 0.5 * x - 0.25, lambda x: 0.5 + 0 * x),
}
# Finite differences in float64 are accurate to about 1e-16 |y| / eps, so the values stay
# moderate: inputs in [-2, 2], and only bounded or affine maps after the core.
chains = st.lists(st.sampled_from(sorted(MAPS)), max_size=2)
output_chains = st.lists(st.sampled_from(["tanh", "sin", "sigmoid", "affine"]), max_size=2)


def chain_forward(names, x):
    """[x, f1(x), f2(f1(x)), ...]: every value the chain's backward needs."""
    values = [x]
    for name in names:
        values.append(MAPS[name][0](values[-1]))
    return values


def chain_backward(names, values, dy):
    for name, v in zip(reversed(names), reversed(values[:-1])):
        dy = dy * MAPS[name][1](v)
    return dy


# --- cores: forward(*z) -> (y, cache); terms(dy, cache) -> per input, a list of terms -------

@dataclass
class Products:
    """``y = sum_k c_k prod_{j in S_k} z_j`` over same-shaped inputs: ``dz_j`` is a sum of
    one term per product containing j."""
    coefs: list
    sets: list

    def forward(self, *z):
        y = 0 * z[0]
        for c, s in zip(self.coefs, self.sets):
            y = y + c * _product(z[j] for j in s)
        return y, z

    def terms(self, dy, z):
        return [[c * dy * _product(z[i] for i in s if i != j)
                 for c, s in zip(self.coefs, self.sets) if j in s] for j in range(len(z))]


def _product(factors):
    out = 1.0
    for f in factors:
        out = out * f
    return out


@dataclass
class Matmul:
    """``y = moveaxis(moveaxis(x, axis, -1) @ weight (+ bias), -1, axis)``."""
    axis: int

    def forward(self, x, weight, bias=None):
        xp = get_array_module(x)
        a = xp.moveaxis(x, self.axis, -1)                    # (..., n)
        y = a @ weight                                       # (..., m)
        if bias is not None:
            y = y + bias
        return xp.moveaxis(y, -1, self.axis), (a, weight, bias is not None)

    def terms(self, dy, cache):
        a, weight, has_bias = cache
        xp = get_array_module(a)
        d = xp.moveaxis(dy, self.axis, -1)                   # (..., m)
        dx = xp.moveaxis(d @ weight.T, -1, self.axis)
        n, m = weight.shape
        flat = d.reshape(-1, m)                              # (rows, m)
        grads = [[dx], [a.reshape(-1, n).T @ flat]]
        return grads + [[flat.sum(axis=0)]] if has_bias else grads


@dataclass
class Conv:
    """``conv2d(x, weight, bias, stride, padding, dilation)``, minifcn's own pair."""
    geometry: tuple

    def forward(self, x, weight, bias=None):
        return conv2d_forward(x, weight, bias, *self.geometry)

    def terms(self, dy, cache):
        grads = conv2d_backward(dy, cache)
        return [[g] for g in grads if g is not None]


@dataclass
class Layer:
    """An elementwise chain on each input, a core, an elementwise chain on the output."""
    core: object
    pre: list
    post: list
    names: list

    def forward(self, *inputs):
        pre = [chain_forward(p, x) for p, x in zip(self.pre, inputs)]
        z, core_cache = self.core.forward(*(v[-1] for v in pre))
        post = chain_forward(self.post, z)
        return post[-1], (pre, core_cache, post)

    def terms(self, dy, cache):
        pre, core_cache, post = cache
        core_terms = self.core.terms(chain_backward(self.post, post, dy), core_cache)
        return [[chain_backward(p, v, t) for t in ts]
                for p, v, ts in zip(self.pre, pre, core_terms)]

    def backward(self, dy, cache):
        return tuple(total(ts) for ts in self.terms(dy, cache))


def total(terms):
    """The sum of a list of terms, as a fresh C-contiguous array."""
    out = terms[0]
    for t in terms[1:]:
        out = out + t
    return get_array_module(out).array(out, copy=True, order="C")   # 0-d results too


# --- hypothesis strategies -------------------------------------------------------------------------

@st.composite
def products_cores(draw):
    shape = draw(array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=4))
    n = draw(st.integers(1, 4))
    subsets = st.lists(st.integers(0, n - 1), min_size=1, max_size=3, unique=True)
    sets = draw(st.lists(subsets, min_size=1, max_size=4))
    sets += [[j] for j in range(n) if not any(j in s for s in sets)]   # every input used
    coefs = draw(st.lists(st.sampled_from([-1.5, -0.5, 0.75, 1.0, 2.0]),
                          min_size=len(sets), max_size=len(sets)))
    return Products(coefs, sets), [shape] * n, "abcd"[:n]


@st.composite
def matmul_cores(draw):
    shape = draw(array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4))
    axis = draw(st.integers(0, len(shape) - 1))
    shapes = [shape, (shape[axis], draw(st.integers(1, 4)))]
    if draw(st.booleans()):
        shapes.append((shapes[1][1],))
    return Matmul(axis), shapes, ["x", "weight", "bias"][: len(shapes)]


@st.composite
def conv_cores(draw):
    small = st.integers(1, 2)
    n, c, f = draw(small), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride, dilation = (draw(small), draw(small)), (draw(small), draw(small))
    padding = (draw(st.integers(0, 1)), draw(st.integers(0, 1)))
    size = [max(1, d * (k - 1) + 1 - 2 * p) + draw(st.integers(0, 3))
            for k, p, d in zip(kernel, padding, dilation)]
    shapes = [(n, c, *size), (f, c, *kernel)] + ([(f,)] if draw(st.booleans()) else [])
    return Conv((stride, padding, dilation)), shapes, ["x", "weight", "bias"][: len(shapes)]


@dataclass
class Case:
    layer: Layer
    inputs: list
    dy: object

    def check(self, backward=None, **kwargs):
        return check_function(self.layer.forward, backward or self.layer.backward,
                              self.inputs, grad_output=self.dy, names=self.layer.names,
                              **kwargs)

    def grads(self):
        """The correct gradients at this case's dy, on the host."""
        _, cache = self.layer.forward(*self.inputs)
        return [asnumpy(g) for g in self.layer.backward(self.dy, cache)]


@st.composite
def cases(draw, xp):
    core, shapes, names = draw(st.one_of(products_cores(), matmul_cores(), conv_cores()))
    layer = Layer(core, [draw(chains) for _ in shapes], draw(output_chains), list(names))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    inputs = [xp.asarray(rng.uniform(-2, 2, s)) for s in shapes]
    y, _ = layer.forward(*inputs)
    return Case(layer, inputs, xp.asarray(rng.standard_normal(y.shape)))
