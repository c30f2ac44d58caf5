r"""Kinks: points where the checked function has no derivative, told apart from wrong backwards.

At a kink (ReLU at 0, a max-pool window with a tie, ``abs`` at 0, clipping at a bound) the
function has two one-sided slopes. The central difference measures their average, so a
correct backward, which returns one of them, fails there, in any finite-difference checker.
The pass/fail rule stays as it is: this module only says which failures a kink explains.

With ``left = <y0 - f(x - eps e), dy> / eps`` and ``right = <f(x + eps e) - y0, dy> / eps``
(the same two forward calls as the central difference, and the unperturbed ``y0``), an
element sits at a kink when

.. math::

    |right - left| > M \, (atol + rtol \max(|left|, |right|)) + noise,
    \qquad M = 8,

``noise`` bounding the rounding of the outputs (see :mod:`.numerical`: it grows
with ``|y0|`` and as ``1 / eps``, so float32 and large outputs do not look like kinks).

Why ``M = 8``. Where f is smooth, ``right - left = eps L''`` (L'' the second derivative of
``<f, dy>`` along the step), so an element is flagged only where ``|L''| > M tol / eps``:
with the float64 defaults (eps 1e-6, atol 1e-7, rtol 1e-5) above ``0.8 + 80 |g|``, with the
float32 ones (1e-3, 1e-2, 1e-2) above ``80 (1 + |g|)``, g the gradient. tanh, sigmoid,
softplus and exp (``|L''| <= 2 |g|``) are never flagged, nor are linear ops (conv, bilinear
upsampling); ``x ** 2`` at 50 standard normal inputs reached 2.6 tolerances. At a kink whose
backward returns one side, the failure's err/tol is about ``|right - left| / (2 tol)``, so
every such failure beyond an err/tol of 4 to 8 is flagged: ReLU's jump is ``|dy|``, about
1e5 tolerances in float64 and 50 in float32. A smooth point of high curvature where the
gradient nearly vanishes (``x ** 2`` at 0 in float64) looks like a kink at this eps; a wrong
backward there will hardly equal either side, and the report then says that the kink does
not explain the failure.
"""
from __future__ import annotations

import numpy as np

KINK_MARGIN = 8.0

LEFT, RIGHT = "left", "right"


def _allowed(slope, noise, atol, rtol):
    return KINK_MARGIN * (atol + rtol * np.abs(slope)) + noise


def kink_mask(right, left, noise, atol: float, rtol: float) -> np.ndarray:
    """True where the one-sided slopes differ by more than :data:`KINK_MARGIN` tolerances
    and the rounding ``noise`` (arrays of one-sided slopes, as from ``differences_at``)."""
    right, left, noise = (np.asarray(a, dtype=np.float64) for a in (right, left, noise))
    scale = np.maximum(np.abs(left), np.abs(right))
    with np.errstate(invalid="ignore"):
        return np.abs(right - left) > _allowed(scale, noise, atol, rtol)   # NaN: False


def matched_slope(analytic: float, right: float, left: float, noise: float, atol: float,
                  rtol: float) -> str:
    """``"right"`` or ``"left"``: the one-sided slope ``analytic`` equals (to the same margin,
    since a one-sided difference errs by O(eps) where the central one errs by O(eps^2); the
    nearer one when both are within it), or ``""`` when it equals neither."""
    near = [(abs(analytic - slope), side) for slope, side in ((right, RIGHT), (left, LEFT))
            if abs(analytic - slope) <= _allowed(slope, noise, atol, rtol)]
    return min(near)[1] if near else ""
