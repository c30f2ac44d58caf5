"""SGD, Adam and the learning-rate schedules against torch.optim, step for step; frozen
parameters; parameter groups (the FCN bias recipe); state_dict round trips; argument errors."""
import numpy as np
import pytest

from minifcn.backend import asnumpy
from minifcn.lr_schedule import LRScheduler
from minifcn.nn import Module, Parameter
from minifcn.optim import SGD, Adam, fcn_param_groups

from helpers import rel_error

SHAPES = [(3, 4), (4,), (2, 3, 2), (5,)]      # weight, bias, weight, bias
NAMES = ["a.weight", "a.bias", "b.weight", "b.bias"]
STEPS = 7


class Net(Module):
    """Four parameters named like a two-layer net's: weights and biases."""

    def __init__(self, arrays):
        super().__init__()
        self.a, self.b = Module(), Module()
        self.a.weight, self.a.bias, self.b.weight, self.b.bias = map(Parameter, arrays)


def _problem(rng, dtype=np.float64):
    """Initial parameters and STEPS gradients for each, as NumPy arrays."""
    params = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    grads = [[rng.standard_normal(s).astype(dtype) for s in SHAPES] for _ in range(STEPS)]
    return params, grads


def _run_ours(xp, make, params, grads, dtype=np.float64):
    model = Net([xp.array(p, dtype=dtype) for p in params])      # copies
    opt = make(model)
    for step_grads in grads:
        for p, g in zip(model.parameters(), step_grads):
            p.grad = xp.asarray(g, dtype=dtype)
        opt.step()
    return [p.data for p in model.parameters()]


def _run_torch(torch, make, params, grads):
    tensors = [torch.tensor(p, requires_grad=True) for p in params]
    opt = make(tensors)
    for step_grads in grads:
        for t, g in zip(tensors, step_grads):
            t.grad = torch.tensor(g)
        opt.step()
    return [t.detach().numpy() for t in tensors]


def _compare(ours, theirs, tol):
    for name, got, want in zip(NAMES, ours, theirs):
        assert rel_error(got, want) < tol, name


SGD_CASES = {
    "plain": dict(lr=0.1),
    "momentum": dict(lr=0.1, momentum=0.9),
    "decay": dict(lr=0.05, weight_decay=1e-2),
    "momentum-decay": dict(lr=0.1, momentum=0.99, weight_decay=5e-3),
}
ADAM_CASES = {
    "default": dict(),
    "decay": dict(lr=1e-2, weight_decay=1e-2),
    "betas-eps": dict(lr=3e-2, betas=(0.5, 0.9), eps=1e-6),
}


@pytest.mark.parametrize("options", SGD_CASES.values(), ids=SGD_CASES.keys())
def test_sgd_matches_torch(xp, torch, rng, options):
    params, grads = _problem(rng)
    ours = _run_ours(xp, lambda m: SGD(m.parameters(), **options), params, grads)
    theirs = _run_torch(torch, lambda ts: torch.optim.SGD(ts, **options), params, grads)
    _compare(ours, theirs, 1e-12)


@pytest.mark.parametrize("options", ADAM_CASES.values(), ids=ADAM_CASES.keys())
def test_adam_matches_torch(xp, torch, rng, options):
    params, grads = _problem(rng)
    ours = _run_ours(xp, lambda m: Adam(m.parameters(), **options), params, grads)
    theirs = _run_torch(torch, lambda ts: torch.optim.Adam(ts, **options), params, grads)
    _compare(ours, theirs, 1e-12)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_fcn_param_groups_match_torch_groups(xp, torch, rng, optimizer):
    """Biases at twice the learning rate and without weight decay, as in the reference."""
    params, grads = _problem(rng)
    lr, wd = 0.02, 0.1
    ours_cls, torch_cls, extra = {"sgd": (SGD, torch.optim.SGD, dict(momentum=0.9)),
                                  "adam": (Adam, torch.optim.Adam, {})}[optimizer]

    def torch_groups(ts):
        return torch_cls([{"params": ts[0::2], "lr": lr, "weight_decay": wd},
                          {"params": ts[1::2], "lr": 2 * lr, "weight_decay": 0.0}],
                         lr=lr, **extra)

    ours = _run_ours(xp, lambda m: ours_cls(fcn_param_groups(m, lr, wd), lr=lr, **extra),
                     params, grads)
    _compare(ours, _run_torch(torch, torch_groups, params, grads), 1e-12)


def test_fcn_param_groups_split_by_name():
    model = Net([np.zeros(s) for s in SHAPES])
    weights, biases = fcn_param_groups(model, lr=0.1, weight_decay=5e-4)
    assert [p.shape for p in weights["params"]] == [SHAPES[0], SHAPES[2]]
    assert [p.shape for p in biases["params"]] == [SHAPES[1], SHAPES[3]]
    assert (weights["lr"], weights["weight_decay"]) == (0.1, 5e-4)
    assert (biases["lr"], biases["weight_decay"]) == (0.2, 0.0)


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 1e-5)],
                         ids=["float64", "float32"])
@pytest.mark.parametrize("make", [lambda ps: SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.1),
                                  lambda ps: Adam(ps, lr=0.1, weight_decay=0.1)],
                         ids=["sgd", "adam"])
def test_updates_in_place_keep_dtype_and_skip_frozen(xp, torch, rng, make, dtype, tol):
    params, grads = _problem(rng, dtype)
    model = Net([xp.array(p) for p in params])
    frozen, no_grad = model.a.weight, model.b.bias
    frozen.requires_grad = False
    arrays = [p.data for p in model.parameters()]
    opt = make(model.parameters())
    for step_grads in grads[:3]:
        for p, g in zip(model.parameters(), step_grads):
            p.grad = None if p is no_grad else xp.asarray(g)   # frozen: grad set, still skipped
        opt.step()
    assert all(p.data is a for p, a in zip(model.parameters(), arrays)), "arrays replaced"
    assert all(p.dtype == dtype for p in model.parameters())
    np.testing.assert_array_equal(asnumpy(frozen.data), params[0])
    np.testing.assert_array_equal(asnumpy(no_grad.data), params[3])
    assert rel_error(model.a.bias.data, params[1]) > 1e-3, "a trainable parameter did not move"
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())


# --- Schedules --------------------------------------------------------------------------------

def _torch_lrs(torch, make_scheduler, base_lrs, n):
    t = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([{"params": [t], "lr": lr} for lr in base_lrs[:1]]
                          + [{"params": [torch.zeros(1, requires_grad=True)], "lr": lr}
                             for lr in base_lrs[1:]])
    sched = make_scheduler(opt)
    lrs = [sched.get_last_lr()]
    for _ in range(n):
        opt.step()
        sched.step()
        lrs.append(sched.get_last_lr())
    return np.array(lrs)


def _our_lrs(make_scheduler, base_lrs, n):
    opt = SGD([{"params": [Parameter(np.zeros(1))], "lr": lr} for lr in base_lrs], lr=0.0)
    sched = make_scheduler(opt)
    lrs = [sched.get_last_lr()]
    for _ in range(n):
        opt.step()
        sched.step()
        lrs.append([g["lr"] for g in opt.param_groups])
    return np.array(lrs)


@pytest.mark.parametrize("ours, theirs", [
    pytest.param(lambda o: LRScheduler(o, "step", step_size=3, gamma=0.5),
                 lambda t, o: t.optim.lr_scheduler.StepLR(o, step_size=3, gamma=0.5), id="step"),
    pytest.param(lambda o: LRScheduler(o, "poly", max_iter=9, power=0.9),
                 lambda t, o: t.optim.lr_scheduler.PolynomialLR(o, total_iters=9, power=0.9),
                 id="poly"),
    pytest.param(lambda o: LRScheduler(o, "poly", max_iter=5, power=1.0),
                 lambda t, o: t.optim.lr_scheduler.PolynomialLR(o, total_iters=5, power=1.0),
                 id="poly-linear"),
])
def test_schedules_match_torch(torch, ours, theirs):
    """12 iterations, past the poly schedule's end (torch holds it at 0 there too)."""
    base = [0.1, 0.02]
    got = _our_lrs(ours, base, 12)
    want = _torch_lrs(torch, lambda o: theirs(torch, o), base, 12)
    assert rel_error(got, want) < 1e-12


def test_schedule_formulas():
    base = [1e-3, 2e-3]
    poly = _our_lrs(lambda o: LRScheduler(o, "poly", max_iter=10), base, 12)
    it = np.minimum(np.arange(13), 10)[:, None]
    assert rel_error(poly, np.array(base) * (1 - it / 10) ** 0.9) < 1e-15
    assert poly[10:].max() == 0.0
    const = _our_lrs(lambda o: LRScheduler(o, "constant"), base, 5)
    np.testing.assert_array_equal(const, np.tile(base, (6, 1)))
    half = _our_lrs(lambda o: LRScheduler(o, lambda t: 0.5 ** t), base, 3)
    assert rel_error(half[:, 0], 1e-3 * 0.5 ** np.arange(4)) < 1e-15


def test_warmup_ramps_any_schedule_linearly():
    base = [1e-3, 2e-3]
    warm = _our_lrs(lambda o: LRScheduler(o, "poly", max_iter=10, warmup=4), base, 12)
    it = np.arange(13)[:, None]
    ramp = np.minimum(1.0, (it + 1) / 4)
    want = np.array(base) * ramp * (1 - np.minimum(it, 10) / 10) ** 0.9
    assert rel_error(warm, want) < 1e-15
    assert warm[0, 0] == pytest.approx(0.25 * 1e-3 * (1.0 ** 0.9))
    const = _our_lrs(lambda o: LRScheduler(o, lambda t: 1.0, warmup=2), base, 3)
    np.testing.assert_allclose(const[:, 1], [1e-3, 2e-3, 2e-3, 2e-3])
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="warmup must be an int >= 0"):
            LRScheduler(Adam([Parameter(np.zeros(2))], lr=1.0), warmup=bad)


# --- state_dict round trips -------------------------------------------------------------------

def _train(xp, model, opt, sched, grads):
    for step_grads in grads:
        for p, g in zip(model.parameters(), step_grads):
            p.grad = xp.asarray(g)
        opt.step()
        sched.step()


@pytest.mark.parametrize("make", [
    lambda m: SGD(fcn_param_groups(m, 0.1, 1e-2), lr=0.1, momentum=0.9),
    lambda m: Adam(m.parameters(), lr=1e-2, weight_decay=1e-3)], ids=["sgd", "adam"])
def test_state_dict_round_trip_through_npz_resumes_exactly(xp, rng, tmp_path, make):
    """K steps, save, new optimiser and scheduler load, M steps == K + M steps straight."""
    params, grads = _problem(rng)
    k = 3

    def fresh(arrays):
        model = Net([xp.array(a) for a in arrays])
        opt = make(model)
        return model, opt, LRScheduler(opt, "poly", max_iter=STEPS + 2)

    straight, opt, sched = fresh(params)
    _train(xp, straight, opt, sched, grads)

    first, opt, sched = fresh(params)
    _train(xp, first, opt, sched, grads[:k])
    np.savez(tmp_path / "ckpt.npz", **{f"model.{n}": asnumpy(a)
                                       for n, a in first.state_dict().items()},
             **{f"optim.{n}": v for n, v in opt.state_dict().items()},
             **{f"sched.{n}": v for n, v in sched.state_dict().items()})
    _train(xp, first, opt, sched, [[g * 0 + 7 for g in gs] for gs in grads[:1]])  # state moves on

    with np.load(tmp_path / "ckpt.npz", allow_pickle=False) as f:
        saved = {n: f[n] for n in f.files}
    part = {prefix: {n[len(prefix) + 1:]: v for n, v in saved.items() if n.startswith(prefix)}
            for prefix in ("model", "optim", "sched")}
    resumed, opt, sched = fresh([np.zeros(s) for s in SHAPES])
    resumed.load_state_dict(part["model"])
    opt.load_state_dict(part["optim"])
    sched.load_state_dict(part["sched"])
    _train(xp, resumed, opt, sched, grads[k:])
    for name, got, want in zip(NAMES, resumed.parameters(), straight.parameters()):
        np.testing.assert_array_equal(asnumpy(got.data), asnumpy(want.data), err_msg=name)


def test_state_dict_is_plain_arrays_and_numbers(rng):
    params, grads = _problem(rng)
    model = Net(params)
    opt = Adam(model.parameters())
    model.a.weight.grad = grads[0][0]
    opt.step()
    sd = opt.state_dict()
    assert sd["state.0.step"] == 1 and "state.1.step" not in sd
    assert all(isinstance(v, (np.ndarray, int, float)) for v in sd.values())
    sd["state.0.exp_avg"][...] = 99.0                     # a copy, not the live buffer
    assert opt.state[0]["exp_avg"].max() < 99.0


def test_load_state_dict_restores_options(xp):
    """Options come from the state_dict, as in torch: a resumed run keeps its lr."""
    saved = SGD([Parameter(xp.zeros(2))], lr=0.1, momentum=0.9, weight_decay=1e-3)
    opt = SGD([Parameter(xp.zeros(2))], lr=0.5)
    opt.load_state_dict(saved.state_dict())
    assert opt.param_groups[0]["lr"] == 0.1
    assert (opt.param_groups[0]["momentum"], opt.param_groups[0]["weight_decay"]) == (0.9, 1e-3)


def test_load_state_dict_errors(rng):
    model = Net([np.zeros(s) for s in SHAPES])
    opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
    for p in model.parameters():
        p.grad = np.ones(p.shape)
    opt.step()
    sd = opt.state_dict()
    with pytest.raises(ValueError, match="group 0 holds parameters"):
        SGD(model.parameters()[:3], lr=0.1).load_state_dict(sd)
    with pytest.raises(ValueError, match=r"'state.1.momentum_buffer' has shape \(3, 4\)"):
        opt.load_state_dict({**sd, "state.1.momentum_buffer": np.zeros((3, 4))})
    with pytest.raises(ValueError, match="unexpected key 'state.0.exp_avg'"):
        opt.load_state_dict({**sd, "state.0.exp_avg": np.zeros((3, 4))})
    with pytest.raises(ValueError, match="missing the key 'groups.0.lr'"):
        opt.load_state_dict({k: v for k, v in sd.items() if k != "groups.0.lr"})
    with pytest.raises(ValueError, match="momentum must be in"):
        opt.load_state_dict({**sd, "groups.0.momentum": 1.5})
    assert opt.param_groups[0]["momentum"] == 0.9          # a failed load changes nothing


# --- Argument errors --------------------------------------------------------------------------

def _p():
    return [Parameter(np.zeros(2))]


@pytest.mark.parametrize("make, error, match", [
    (lambda: SGD(_p(), lr=-0.1), ValueError, "lr must be a finite number >= 0, got -0.1"),
    (lambda: SGD(_p(), lr=float("nan")), ValueError, "lr must be"),
    (lambda: SGD(_p(), lr="0.1"), TypeError, "lr must be a number"),
    (lambda: SGD(_p(), lr=0.1, momentum=1.0), ValueError, r"momentum must be in \[0, 1\)"),
    (lambda: SGD(_p(), lr=0.1, momentum=-0.5), ValueError, "momentum must be in"),
    (lambda: SGD(_p(), lr=0.1, weight_decay=-1), ValueError, "weight_decay must be"),
    (lambda: SGD([], lr=0.1), ValueError, "params is empty"),
    (lambda: SGD(_p()[0], lr=0.1), TypeError, "single Parameter; wrap it in a list"),
    (lambda: SGD([np.zeros(2)], lr=0.1), TypeError, "Parameter objects, got ndarray"),
    (lambda: SGD(_p() * 2, lr=0.1), ValueError, "more than once"),
    (lambda: SGD([{"params": _p(), "lr": 0.1, "nesterov": True}], lr=0.1), ValueError,
     r"unknown option\(s\) \['nesterov'\]"),
    (lambda: SGD([{"params": _p(), "lr": -1.0}], lr=0.1), ValueError, "lr must be"),
    (lambda: Adam(_p(), betas=(0.9, 1.0)), ValueError, r"betas\[1\] must be in \[0, 1\)"),
    (lambda: Adam(_p(), betas=(-0.1, 0.9)), ValueError, r"betas\[0\] must be in"),
    (lambda: Adam(_p(), betas=0.9), TypeError, "betas must be a pair"),
    (lambda: Adam(_p(), eps=-1e-8), ValueError, "eps must be"),
    (lambda: LRScheduler(SGD(_p(), lr=0.1), "cosine"), ValueError,
     r"schedule must be one of \['constant', 'poly', 'step'\]"),
    (lambda: LRScheduler(SGD(_p(), lr=0.1), "poly"), TypeError, "schedule 'poly'.*max_iter"),
    (lambda: LRScheduler(SGD(_p(), lr=0.1), "poly", max_iter=0), ValueError,
     "max_iter must be positive"),
    (lambda: LRScheduler(SGD(_p(), lr=0.1), "step", step_size=2, gamma=-1), ValueError,
     "gamma must be"),
], ids=lambda v: "" if callable(v) or isinstance(v, type) else v[:30])
def test_bad_arguments_name_the_argument(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_mixed_devices_name_the_arrays(xp):
    if xp is np:
        pytest.skip("needs a GPU array beside a CPU one")
    p = Parameter(xp.zeros(2))
    p.grad = np.ones(2)
    with pytest.raises(ValueError, match="parameter is on cuda:0, grad is on cpu"):
        SGD([p], lr=0.1).step()
