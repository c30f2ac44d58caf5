"""Shared fixtures: the ``xp`` backend fixture, a seeded rng, and torch for reference tests.

``xp`` runs a test body once on NumPy and once on CuPy. Where no GPU is usable, the CuPy case
runs on the CuPy emulation (tests/cupy_emulation: CuPy's names and signatures on NumPy
arrays, the CUDA kernels compiled for the host), for the first parameter set of each test by
default and for all of them with MINIFCN_EMULATE_GPU=all (MINIFCN_EMULATE_GPU=0: none, the
CuPy cases skip). MINIFCN_REQUIRE_GPU=1 (set it on a GPU machine) makes a missing GPU an
error instead.
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

import cupy_emulation
from minifcn import backend
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
    if cupy_available():
        import cupy
        return cupy
    if _required("MINIFCN_REQUIRE_GPU"):
        pytest.fail("MINIFCN_REQUIRE_GPU is set but CuPy cannot use a GPU here")
    if not _emulated(request):
        pytest.skip("CuPy with a usable GPU is not available (MINIFCN_EMULATE_GPU=all runs "
                    "this case on the CuPy emulation)")
    return request.getfixturevalue("emulated_cupy")


def _emulated(request) -> bool:
    """Whether this CuPy case runs on the emulation: all with MINIFCN_EMULATE_GPU=all, none
    with 0, else the test's first parameter set (every other parameter at its first value)."""
    mode = os.environ.get("MINIFCN_EMULATE_GPU", "first")
    if mode == "0" or cupy_emulation.compiler() is None:
        return False
    indices = getattr(getattr(request.node, "callspec", None), "indices", {})
    return mode == "all" or all(i == 0 for name, i in indices.items() if name != "xp")


@pytest.fixture
def emulated_cupy():
    """The CuPy emulation as ``cupy`` for one test (minifcn sees a GPU: cuda:0)."""
    backend.cupy_available.cache_clear()
    with cupy_emulation.installed() as cupy:
        yield cupy
    backend.cupy_available.cache_clear()


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
