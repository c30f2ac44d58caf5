"""``GradcheckReport``: what the checker found, per tensor and per property, as a table."""
from __future__ import annotations

from dataclasses import dataclass, field


class GradcheckError(AssertionError):
    """Raised by ``raise_on_failure=True``; the message is the report's table."""


@dataclass
class TensorResult:
    """The comparison of one gradient (of an input or a parameter) with finite differences.

    An element passes when ``|analytic - numerical| <= atol + rtol * |numerical|``;
    ``n_failed`` of the ``n_checked`` elements did not. The *worst* element is the one
    furthest past its tolerance: the largest ``tolerance_ratio``, ``|analytic - numerical| /
    (atol + rtol * |numerical|)`` (above 1 fails). ``worst_index`` is where it is;
    ``analytic``, ``numerical``, ``abs_error`` and ``tolerance_ratio`` are its values (in
    directional mode: of the two directional derivatives, and ``worst_index`` is None). The
    report's table prints these, all at the one worst element. ``max_abs_error`` and
    ``max_rel_error`` are maxima over all checked elements, often at other elements.
    ``message`` says why a gradient could not be compared at all (None, wrong shape, ...).

    Kinks (see :mod:`minifcn.gradcheck.kinks`): ``n_kinks`` of the checked elements (or
    directions) have one-sided slopes that differ, ``n_failed_at_kinks`` of them failed.
    ``left_slope`` and ``right_slope`` are the worst element's one-sided slopes,
    ``worst_at_kink`` whether they differ, and ``matched_slope`` (``"left"``, ``"right"`` or
    ``""``) which one the analytic value equals there when they do.
    """
    name: str
    shape: tuple
    passed: bool
    n_checked: int = 0
    n_elements: int = 0
    max_abs_error: float = float("nan")
    max_rel_error: float = float("nan")
    worst_index: tuple | None = None
    analytic: float = float("nan")
    numerical: float = float("nan")
    message: str = ""
    n_failed: int = 0
    tolerance_ratio: float = float("nan")
    n_kinks: int = 0
    n_failed_at_kinks: int = 0
    left_slope: float = float("nan")
    right_slope: float = float("nan")
    worst_at_kink: bool = False
    matched_slope: str = ""

    @property
    def abs_error(self) -> float:
        """``|analytic - numerical|`` at the worst element."""
        return abs(self.analytic - self.numerical)


@dataclass
class PropertyResult:
    """A structural check of the backward: linearity in dy, repeatability, purity."""
    name: str
    passed: bool
    detail: str = ""


@dataclass
class GradcheckReport:
    """Result of :func:`check_function` or :func:`check_module`.

    ``passed`` is True when every tensor and every property passed. ``str(report)`` is a
    table with one row per tensor, every number on a row taken at that tensor's worst
    element: the one furthest past its tolerance (see :class:`TensorResult`). Under the
    table, one line for each tensor whose failures sit at kinks (:func:`kink_note`).
    """
    title: str
    settings: dict
    tensors: list[TensorResult] = field(default_factory=list)
    properties: list[PropertyResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(t.passed for t in self.tensors) and all(p.passed for p in self.properties)

    def failures(self) -> list[str]:
        """Names of the tensors and properties that failed."""
        return ([t.name for t in self.tensors if not t.passed]
                + [p.name for p in self.properties if not p.passed])

    def tensor(self, name: str) -> TensorResult:
        for t in self.tensors:
            if t.name == name:
                return t
        raise KeyError(f"no tensor named {name!r} in this report; "
                       f"it has {[t.name for t in self.tensors]}")

    def raise_if_failed(self) -> "GradcheckReport":
        if not self.passed:
            raise GradcheckError("\n" + str(self))
        return self

    def __str__(self) -> str:
        verdict = "passed" if self.passed else "FAILED: " + ", ".join(self.failures())
        options = ", ".join(f"{k}={v}" for k, v in self.settings.items())
        lines = [f"gradcheck {self.title}: {verdict}", f"  ({options})", ""]
        lines += _table(["tensor", "shape", "checked", "failed", "worst at", "analytic",
                         "numerical", "abs err", "err/tol", "result"],
                        [_tensor_row(t) for t in self.tensors])
        lines += LEGEND
        notes = [note for note in map(kink_note, self.tensors) if note]
        if notes:
            lines += [""] + ["  " + note for note in notes]
        if self.properties:
            lines.append("")
            lines += _table(["property", "result", "detail"],
                            [[p.name, "ok" if p.passed else "FAIL", p.detail]
                             for p in self.properties])
        return "\n".join(lines)


# What a row means, printed under the tensor table.
LEGEND = ("  worst at: the element furthest past its tolerance, the largest "
          "err/tol = |analytic - numerical| / (atol + rtol*|numerical|)",
          "  analytic, numerical, abs err, err/tol: the values at that element; "
          "err/tol > 1 fails")


def kink_note(t: TensorResult) -> str:
    """One line on the failures of ``t`` that sit at kinks, or ``""`` when none does."""
    if t.n_failed_at_kinks == 0:
        return ""
    slopes = f"left {_g(t.left_slope)}, right {_g(t.right_slope)}, analytic {_g(t.analytic)}"
    if t.worst_index is None:                        # directional mode: one direction
        head = (f"{t.name}: the direction crosses a kink (one-sided directional derivatives "
                f"differ): {slopes}")
        if t.matched_slope:
            return (f"{head} = the {t.matched_slope} one: the backward is consistent with one "
                    f"side; {_MOVE} or rerun with mode='full' to see which elements")
        return (f"{head}, equal to neither: across several kinks a correct backward can "
                f"match neither; rerun with mode='full' to tell kinks from errors, or {_MOVE}")
    if t.n_failed == 1:
        count = "the failed element sits at a kink"
    else:
        count = (f"{t.n_failed_at_kinks} of the {t.n_failed} failed elements "
                 + ("sits at a kink" if t.n_failed_at_kinks == 1 else "sit at kinks"))
    head = f"{t.name}: {count} (one-sided slopes differ)"
    if not t.worst_at_kink:
        return (f"{head}; the worst, at {t.worst_index}, does not ({slopes}): the backward "
                f"is wrong there")
    head += f"; at {t.worst_index}: {slopes}"
    others = t.n_failed - t.n_failed_at_kinks
    tail = (f"; the other {others} failed " + ("element is" if others == 1 else "elements are")
            + " not at kinks: the backward is wrong there") if others else ""
    if t.matched_slope:
        return (f"{head} = the {t.matched_slope} slope: the backward is consistent with one "
                f"side; {_MOVE} and check again{tail}")
    return (f"{head}, equal to neither slope: the kink does not explain it; look for an "
            f"error in the backward there{tail}")


# The advice when a backward follows one side of a kink.
_MOVE = ("move the point off the kinks (relu inputs away from 0, such as nonzero biases; "
         "max-pool windows without ties)")


def _g(value: float) -> str:
    return f"{value + 0.0:.6g}"     # + 0.0: -0.0 prints as 0


def _tensor_row(t: TensorResult) -> list[str]:
    result = "ok" if t.passed else "FAIL"
    if t.message:
        result += ": " + t.message
    if t.n_checked == 0:
        return [t.name, str(t.shape), "-", "-", "-", "-", "-", "-", "-", result]
    checked = (f"{t.n_checked} dir" if t.worst_index is None
               else f"{t.n_checked}/{t.n_elements}")
    worst = "direction" if t.worst_index is None else str(t.worst_index)
    return [t.name, str(t.shape), checked, str(t.n_failed), worst, f"{t.analytic:.6e}",
            f"{t.numerical:.6e}", f"{t.abs_error:.2e}", f"{t.tolerance_ratio:.3g}", result]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(r[c])) for r in [header] + rows) for c in range(len(header))]
    fmt = lambda r: "  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip()
    return [fmt(header), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows]
