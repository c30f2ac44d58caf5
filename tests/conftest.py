"""Shared fixtures: the ``xp`` backend fixture, a seeded rng, and torch for reference tests.

``xp`` runs a test body once on NumPy and once on CuPy. The CuPy case skips where no GPU is
usable, unless MINIFCN_REQUIRE_GPU=1 (set it on a GPU machine: a skip is then an error).
The ``torch`` fixture skips where PyTorch is missing, unless MINIFCN_REQUIRE_TORCH=1 (set by
.ci/run: the reference tests must run in CI, not skip).

Hypothesis profiles: ``minifcn`` (loaded here; the property tests' default example counts,
sized for CI) and ``thorough`` (20 times as many examples): ``pytest
--hypothesis-profile=thorough tests/test_parity_properties.py``. Property tests that should
follow the profile leave ``max_examples`` unset.
"""
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from minifcn.backend import cupy_available


EXAMPLES = 50          # per property test in the default profile; "thorough" runs 20x
settings.register_profile("minifcn", max_examples=EXAMPLES, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow,
                                                 HealthCheck.function_scoped_fixture])
settings.register_profile("thorough", max_examples=20 * EXAMPLES, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow,
                                                 HealthCheck.function_scoped_fixture])
settings.load_profile("minifcn")


def _required(variable: str) -> bool:
    return os.environ.get(variable, "") not in ("", "0")


@pytest.fixture(params=["numpy", "cupy"])
def xp(request):
    if request.param == "numpy":
        return np
    if not cupy_available():
        if _required("MINIFCN_REQUIRE_GPU"):
            pytest.fail("MINIFCN_REQUIRE_GPU is set but CuPy cannot use a GPU here")
        pytest.skip("CuPy with a usable GPU is not available")
    import cupy
    return cupy


@pytest.fixture
def rng():
    return np.random.default_rng(20261121)


@pytest.fixture(scope="session")
def torch():
    try:
        import torch
    except ImportError as err:
        if _required("MINIFCN_REQUIRE_TORCH"):
            pytest.fail(f"MINIFCN_REQUIRE_TORCH is set but torch cannot be imported: {err}")
        pytest.skip("torch is not installed (pip install torch==2.13.0)")
    return torch
