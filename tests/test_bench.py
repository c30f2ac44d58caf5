"""minifcn.bench: the timing helper counts its calls and summarises them; FLOP counts by hand.
No timing is asserted here (benchmarks measure, tests check behaviour)."""
import sys
import types

import numpy as np
import pytest

from minifcn.bench import Timing, blas_info, conv_flops, time_call


@pytest.mark.parametrize("repeat, warmup", [(1, 0), (3, 1), (5, 2)],
                         ids=["once-no-warmup", "3-after-1", "5-after-2"])
def test_time_call_calls_warmup_plus_repeat_times(repeat, warmup):
    calls = []
    timing = time_call(lambda: calls.append(sum(range(1000))), repeat=repeat, warmup=warmup)
    assert len(calls) == warmup + repeat
    assert len(timing.times) == repeat
    assert timing.median > 0
    assert timing.min <= timing.q1 <= timing.median <= timing.q3 <= timing.max
    assert timing.iqr >= 0


def test_timing_summary_of_known_times():
    timing = Timing.from_times([4.0, 1.0, 3.0, 2.0, 5.0])
    assert (timing.median, timing.q1, timing.q3) == (3.0, 2.0, 4.0)
    assert (timing.min, timing.max, timing.iqr) == (1.0, 5.0, 2.0)
    assert timing.times == (4.0, 1.0, 3.0, 2.0, 5.0)


@pytest.mark.parametrize("repeat, warmup", [(0, 1), (2, -1), (1.5, 1)],
                         ids=["repeat-0", "warmup-negative", "repeat-float"])
def test_time_call_rejects_bad_counts(repeat, warmup):
    with pytest.raises(ValueError, match="repeat|warmup"):
        time_call(lambda: None, repeat=repeat, warmup=warmup)


def test_conv_flops_by_hand():
    # VGG16 conv1_2 at 224x224: 64 filters, 64 channels, 3x3, output 224x224.
    assert conv_flops((1, 64, 224, 224), (64, 64, 3, 3), (224, 224)) == 3_699_376_128
    # N=2, C=3, F=4, 5x3 kernel, 6x7 output: 2 * 2*4*6*7 * 3*5*3 multiply-adds.
    assert conv_flops((2, 3, 10, 9), (4, 3, 5, 3), (6, 7)) == 2 * (2 * 4 * 6 * 7) * (3 * 5 * 3)


def test_conv_flops_names_channel_mismatch():
    with pytest.raises(ValueError, match="input channels"):
        conv_flops((1, 3, 8, 8), (4, 5, 3, 3), (6, 6))


def test_blas_info_has_every_key():
    np.ones((8, 8)) @ np.ones((8, 8))   # make sure the BLAS is loaded
    info = blas_info()
    assert set(info) == {"name", "version", "config", "threads", "core"}
    assert all(isinstance(v, str) for v in info.values())


def test_time_call_on_gpu_reports_cuda_event_times(monkeypatch):
    # No GPU is needed: a stand-in cupyx.profiler.benchmark checks the wiring, i.e. that the
    # warm-up and repeat counts are passed on and the GPU (event) times are the ones reported.
    seen = {}

    def benchmark(fn, args=(), kwargs={}, n_repeat=10000, *, name=None, n_warmup=10, **_):
        seen.update(n_repeat=n_repeat, n_warmup=n_warmup, name=name)
        cpu_times = np.full(n_repeat, 1e-6)
        gpu_times = np.array([[0.3, 0.1, 0.2][:n_repeat]])   # (devices, n_repeat)
        return types.SimpleNamespace(cpu_times=cpu_times, gpu_times=gpu_times)

    profiler = types.ModuleType("cupyx.profiler")
    profiler.benchmark = benchmark
    monkeypatch.setitem(sys.modules, "cupyx", types.ModuleType("cupyx"))
    monkeypatch.setitem(sys.modules, "cupyx.profiler", profiler)

    def step():
        return None

    timing = time_call(step, repeat=3, warmup=2, xp=types.ModuleType("cupy"))
    assert seen == {"n_repeat": 3, "n_warmup": 2, "name": "step"}
    assert (timing.median, timing.min, timing.max) == (0.2, 0.1, 0.3)
