r"""Learning-rate schedules: ``constant``, ``step`` and ``poly``, applied by ``LRScheduler``.

A schedule is a factor of the iteration, :math:`\eta_t = \eta_0 \, f(t)`, with
:math:`\eta_0` each parameter group's learning rate when the scheduler was made:

=============================  ===========================================================
``constant``                   :math:`f(t) = 1`
``step(step_size, gamma)``     :math:`f(t) = \gamma^{\lfloor t / \text{step\_size} \rfloor}`
                               (``torch.optim.lr_scheduler.StepLR``)
``poly(max_iter, power=0.9)``  :math:`f(t) = (1 - \min(t, T) / T)^{p}`, :math:`T` = ``max_iter``
                               (FCN / DeepLab; ``PolynomialLR(total_iters=T, power=p)``)
=============================  ===========================================================

``warmup=W`` multiplies any schedule by a linear ramp, :math:`\min(1, (t + 1) / W)`, so the
first steps of a network trained from scratch are small (Goyal et al.'s gradual warm-up).

Call ``scheduler.step()`` once per iteration, after ``optimizer.step()``; after ``k`` calls
every group's ``lr`` is :math:`\eta_0 f(k)`, as with PyTorch's schedulers::

    sched = LRScheduler(opt, "poly", max_iter=1000, power=0.9)
    for it in range(1000):
        ...; opt.step(); sched.step()
"""
from __future__ import annotations

import numpy as np

from ._validate import positive_int


def _nonnegative(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not value >= 0 or value == float("inf"):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def constant_lr():
    """``f(t) = 1``: the learning rate never changes."""
    return lambda it: 1.0


def step_lr(step_size: int, gamma: float = 0.1):
    """``f(t) = gamma ** (t // step_size)``: multiply by ``gamma`` every ``step_size`` steps."""
    step_size, gamma = positive_int("step_size", step_size), _nonnegative("gamma", gamma)
    return lambda it: gamma ** (it // step_size)


def poly_lr(max_iter: int, power: float = 0.9):
    """``f(t) = (1 - min(t, max_iter) / max_iter) ** power``: down to 0 at ``max_iter``."""
    max_iter, power = positive_int("max_iter", max_iter), _nonnegative("power", power)
    return lambda it: (1.0 - min(it, max_iter) / max_iter) ** power


SCHEDULES = {"constant": constant_lr, "step": step_lr, "poly": poly_lr}


class LRScheduler:
    """Set each parameter group's ``lr`` to its base ``lr`` times a schedule's factor.

    Parameters
    ----------
    optimizer : minifcn.optim.Optimizer
    schedule : str or callable
        ``"constant"``, ``"step"`` or ``"poly"`` (options as keywords), or any function of
        the iteration returning a factor.
    warmup : int
        Iterations of linear warm-up before the schedule's own factor applies fully
        (default 0: none).
    **options
        The schedule's options: ``step_size``, ``gamma`` for ``"step"``; ``max_iter``,
        ``power`` for ``"poly"``.
    """

    def __init__(self, optimizer, schedule="constant", warmup: int = 0, **options):
        if callable(schedule):
            if options:
                raise TypeError(f"options {sorted(options)} are for named schedules only")
            self.factor = schedule
        elif schedule in SCHEDULES:
            try:
                self.factor = SCHEDULES[schedule](**options)
            except TypeError as err:
                raise TypeError(f"schedule {schedule!r}: {err}") from None
        else:
            raise ValueError(f"schedule must be one of {sorted(SCHEDULES)} or a function of "
                             f"the iteration, got {schedule!r}")
        if isinstance(warmup, bool) or not isinstance(warmup, (int, np.integer)) or warmup < 0:
            raise ValueError(f"warmup must be an int >= 0, got {warmup!r}")
        self.warmup = int(warmup)
        self.optimizer = optimizer
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        self.iteration = 0
        self._apply()

    def lr_at(self, it: int) -> list[float]:
        """Each group's learning rate at iteration ``it``."""
        f = self.factor(it)
        if self.warmup:
            f *= min(1.0, (it + 1) / self.warmup)
        return [base * f for base in self.base_lrs]

    def step(self) -> None:
        """Advance one iteration and set every group's ``lr``."""
        self.iteration += 1
        self._apply()

    def get_last_lr(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def _apply(self) -> None:
        for group, lr in zip(self.optimizer.param_groups, self.lr_at(self.iteration)):
            group["lr"] = lr

    def state_dict(self) -> dict:
        """``iteration`` and ``base_lrs``: plain numbers and an array, savable in an npz."""
        return {"iteration": self.iteration, "base_lrs": np.array(self.base_lrs, np.float64)}

    def load_state_dict(self, state_dict) -> None:
        base = np.asarray(state_dict["base_lrs"], dtype=np.float64).reshape(-1)
        if base.size != len(self.optimizer.param_groups):
            raise ValueError(f"state_dict has base_lrs for {base.size} groups, but the "
                             f"optimizer has {len(self.optimizer.param_groups)}")
        self.base_lrs = base.tolist()
        self.iteration = int(np.asarray(state_dict["iteration"]).item())
        self._apply()
