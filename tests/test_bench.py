"""minifcn.bench: the timing helper counts its calls and summarises them; FLOP counts, table
cells and differences by hand; the header and noise footer say what they should; the benchmark
scripts run. No timing is asserted here (benchmarks measure, tests check behaviour)."""
import pathlib
import subprocess
import sys
import types

import numpy as np
import pytest

import minifcn.bench.timing
from minifcn.bench import (Timing, blas_info, conv_flops, cpu_model, cpu_seconds, format_cell,
                           format_ratio, header_lines, import_torch, other_load,
                           relative_difference, table_head, table_row, time_call)

BENCHMARKS = pathlib.Path(__file__).parent.parent / "benchmarks"


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


@pytest.mark.parametrize("name, value", [("pause", -0.1), ("min_time", -1), ("pause", True),
                                         ("min_time", "0.1")],
                         ids=["pause-negative", "min_time-negative", "pause-bool",
                              "min_time-str"])
def test_time_call_rejects_bad_seconds(name, value):
    with pytest.raises(ValueError, match=f"{name} must be a number of seconds >= 0"):
        time_call(lambda: None, repeat=1, **{name: value})


def test_time_call_pauses_before_the_first_call(monkeypatch):
    events = []
    monkeypatch.setattr(minifcn.bench.timing.time, "sleep", lambda s: events.append(("sleep", s)))
    time_call(lambda: events.append("call"), repeat=2, warmup=1, pause=0.25)
    assert events == [("sleep", 0.25), "call", "call", "call"]


def test_time_call_adds_calls_until_min_time():
    timing = time_call(lambda: sum(range(20000)), repeat=3, warmup=0, min_time=0.005)
    assert len(timing.times) > 3
    assert sum(timing.times) >= 0.005 > sum(timing.times[:-1])   # stops once it is filled


@pytest.mark.parametrize("repeat, expected", [(2, 5), (7, 7)], ids=["capped", "repeat-wins"])
def test_time_call_min_time_stops_at_max_calls(monkeypatch, repeat, expected):
    monkeypatch.setattr(minifcn.bench.timing, "MAX_CALLS", 5)
    calls = []
    timing = time_call(lambda: calls.append(1), repeat=repeat, warmup=0, min_time=0.5)
    assert len(calls) == len(timing.times) == expected


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


def fake_cupyx(monkeypatch, gpu_times):
    """Install a stand-in ``cupyx.profiler.benchmark`` whose runs report ``gpu_times(n_repeat)``
    (seconds per call) as their CUDA event times; return the list of runs it is asked for."""
    runs = []

    def benchmark(fn, args=(), kwargs={}, n_repeat=10000, *, name=None, n_warmup=10, **_):
        runs.append({"n_repeat": n_repeat, "n_warmup": n_warmup, "name": name})
        return types.SimpleNamespace(cpu_times=np.full(n_repeat, 1e-6),
                                     gpu_times=np.array([gpu_times(n_repeat)]))  # (devices, n)

    profiler = types.ModuleType("cupyx.profiler")
    profiler.benchmark = benchmark
    monkeypatch.setitem(sys.modules, "cupyx", types.ModuleType("cupyx"))
    monkeypatch.setitem(sys.modules, "cupyx.profiler", profiler)
    return runs


def step():
    return None


def test_time_call_on_gpu_reports_cuda_event_times(monkeypatch):
    # No GPU is needed: a stand-in cupyx.profiler.benchmark checks the wiring, i.e. that the
    # warm-up and repeat counts are passed on and the GPU (event) times are the ones reported.
    runs = fake_cupyx(monkeypatch, lambda n: [0.3, 0.1, 0.2][:n])
    timing = time_call(step, repeat=3, warmup=2, xp=types.ModuleType("cupy"))
    assert runs == [{"n_repeat": 3, "n_warmup": 2, "name": "step"}]
    assert (timing.median, timing.min, timing.max) == (0.2, 0.1, 0.3)


def test_time_call_on_gpu_times_again_to_fill_min_time(monkeypatch):
    runs = fake_cupyx(monkeypatch, lambda n: [0.001] * n)
    timing = time_call(step, repeat=3, warmup=2, xp=types.ModuleType("cupy"), min_time=0.0105)
    # 3 calls take 3 ms < 10.5 ms: a second run of ceil(10.5 / 1) = 11 calls, no warm-up.
    assert runs == [{"n_repeat": 3, "n_warmup": 2, "name": "step"},
                    {"n_repeat": 11, "n_warmup": 0, "name": "step"}]
    assert len(timing.times) == 11


def test_relative_difference_by_hand(xp):
    want = xp.asarray([1.0, -4.0, 2.0])
    assert relative_difference(xp.asarray([1.0, -4.0, 2.0]), want) == 0.0
    assert relative_difference(xp.asarray([1.5, -4.0, 1.0]), want) == pytest.approx(1.0 / 4.0)
    assert relative_difference(xp.asarray(3.0), xp.asarray(2.0)) == pytest.approx(0.5)  # 0-d
    assert relative_difference(xp.asarray([0.5, 0.0]), xp.zeros(2)) == 0.5   # scale 0: |diff|


def fake_torch(monkeypatch, cuda: bool):
    torch = types.ModuleType("torch")
    torch.__version__ = "9.9.9+fake"
    torch.get_num_threads = lambda: 3
    torch.cuda = types.SimpleNamespace(is_available=lambda: cuda)
    torch.backends = types.SimpleNamespace(cudnn=types.SimpleNamespace(allow_tf32=True),
                                           cuda=types.SimpleNamespace(
                                               matmul=types.SimpleNamespace(allow_tf32=True)))
    monkeypatch.setitem(sys.modules, "torch", torch)
    return torch


def test_import_torch_says_why_it_is_left_out(monkeypatch):
    assert import_torch("cpu", skip=True) == (None, "left out (--no-torch)")
    monkeypatch.setitem(sys.modules, "torch", None)         # import torch raises ImportError
    torch, note = import_torch("cpu")
    assert torch is None and "not installed" in note
    fake_torch(monkeypatch, cuda=False)
    torch, note = import_torch("cuda")
    assert torch is None and note == "9.9.9+fake has no usable CUDA; torch columns skipped"


def test_import_torch_turns_tf32_off_for_cuda(monkeypatch):
    fake = fake_torch(monkeypatch, cuda=True)
    assert import_torch("cpu") == (fake, None)
    assert fake.backends.cudnn.allow_tf32 and fake.backends.cuda.matmul.allow_tf32
    assert import_torch("cuda") == (fake, None)
    assert not fake.backends.cudnn.allow_tf32 and not fake.backends.cuda.matmul.allow_tf32


def test_header_lines_describe_the_run(monkeypatch):
    lines = header_lines(repeat=7, warmup=2, inputs="batch 1, float32, device cpu",
                         torch_note="left out (--no-torch)")
    assert all(line.startswith("# ") for line in lines)
    assert [line.split()[1] for line in lines] == ["date", "machine", "python", "numpy",
                                                    "torch", "timing"]
    assert lines[4] == "# torch     left out (--no-torch)"
    assert lines[5] == ("# timing    median of 7 calls after 2 warm-up, host clock; "
                        "batch 1, float32, device cpu")
    assert cpu_model() in lines[1]
    lines = header_lines(repeat=3, warmup=0, inputs="x", torch=fake_torch(monkeypatch, False),
                         min_time=0.05)
    assert lines[4] == "# torch     9.9.9+fake, get_num_threads() = 3"
    assert "median of 3+ calls (as many as fill 50 ms) after 0 warm-up" in lines[5]


def test_other_load_reports_cpu_seconds_or_unknown():
    start = cpu_seconds()
    assert start is None or (len(start) == 2 and all(s >= 0 for s in start))
    assert other_load(None, 1.0) == "other work on the machine: unknown (no /proc/stat)"
    if start is not None:
        assert other_load(start, 2.0).startswith("other work on the machine during the run: ")
        assert " CPU-s in 2 s (" in other_load(start, 2.0)


def test_table_cells_and_rows_by_hand():
    assert (format_cell(None), format_cell(12.345), format_cell(3.0, ".0f")) == ("-", "12.3", "3")
    assert (format_ratio(3.0, 2.0), format_ratio(3.0, None), format_ratio(None, 1.0)) == \
        ("1.50", "-", "-")
    columns = (("layer", 6), ("shape", 5), ("ms", 4))
    assert table_row(["ab", "c", "1.5"], columns) == "ab      c       1.5"
    assert table_row(["ab", "c", "1.5"], columns, left=1) == "ab          c   1.5"
    assert table_head(columns) == ["layer   shape    ms", "-" * 19]


@pytest.mark.parametrize("script, options, row", [
    ("bench_conv.py", ["--layers", "conv5_1", "--warmup", "0", "--no-torch"], "conv5_1 "),
    ("bench_layers.py", ["--layers", "crop", "--warmup", "0", "--no-torch"], "crop "),
    ("bench_batch_norm.py", ["--layers", "layer2", "--warmup", "0", "--no-torch"],
     "layer2  train "),
    ("bench_grouped_conv.py", ["--layers", "dw3x3-N2", "--warmup", "0", "--no-torch"],
     "dw3x3-N2   64 "),
    ("profile_conv.py", ["--layer", "conv5_1", "--what-if"], "fwd  = conv2d_forward "),
    ("profile_layers.py", ["--layer", "drop6", "--what-if"], "bwd  = dropout_backward "),
], ids=["bench_conv", "bench_layers", "bench_batch_norm", "bench_grouped_conv", "profile_conv",
        "profile_layers"])
def test_benchmark_script_runs(script, options, row):
    done = subprocess.run([sys.executable, str(BENCHMARKS / script), "--repeat", "1"] + options,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("# ")
    assert any(line.startswith(row) for line in lines)
    assert "other work on the machine" in done.stdout
