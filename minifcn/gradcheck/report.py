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
    element: the one furthest past its tolerance (see :class:`TensorResult`).
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
