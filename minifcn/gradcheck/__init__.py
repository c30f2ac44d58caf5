"""Gradient checking for hand-written backward passes: yours and minifcn's.

>>> import numpy as np
>>> from minifcn.gradcheck import check_function
>>> def square_forward(x):
...     return x * x, x
>>> def square_backward(dy, x):
...     return (2 * x * dy,)
>>> check_function(square_forward, square_backward, [np.arange(3.0)]).passed
True

See :func:`check_function`, :func:`check_module` and :class:`GradcheckReport`.
"""
from .checker import MODES, GradcheckPrecisionWarning, check_function
from .module_check import check_module
from .numerical import directional_derivative, numerical_gradient
from .report import GradcheckError, GradcheckReport, PropertyResult, TensorResult

__all__ = [
    "check_function", "check_module", "numerical_gradient", "directional_derivative",
    "GradcheckReport", "TensorResult", "PropertyResult", "GradcheckError",
    "GradcheckPrecisionWarning", "MODES",
]
