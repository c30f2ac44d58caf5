"""`minifcn bench`: a table row per op or network with numbers in it, torch's columns and
ratios where torch is installed, a JSON record of the run and the machine written atomically,
a chart, and one-line user errors. Tiny sizes and one timed call: no timing is asserted."""
import json
import re
import subprocess
import sys

import pytest

import minifcn.bench.results
import minifcn.bench.runner
import minifcn.io
from minifcn import cli
from minifcn.backend import cupy_available
from minifcn.bench.cases import DEFAULT_OPS, OPS, fcn_cases
from minifcn.bench.chart import chart_panels
from minifcn.bench.report import format_row
from minifcn.bench.results import Row
from minifcn.bench.runner import Section
from minifcn.bench.timing import Timing

TINY = ["--size", "16x16", "--width", "0.0625", "--repeat", "1", "--warmup", "0",
        "--min-time", "0", "--no-progress"]
FEW = ["--layers", "conv1_1", "pool1", "upscore8", "loss"]


def bench(capsys, *args):
    """Run ``minifcn bench ARGS`` in this process; (status, stdout, stderr)."""
    status = cli.main(["bench", *args])
    out, err = capsys.readouterr()
    return status, out, err


def tables(out: str) -> list:
    """Each table of the output as (titles, rows of cells): the line above a rule of dashes
    holds the titles, rows follow until a line that is not one (cells are 2+ spaces apart)."""
    lines, found = out.splitlines(), []
    for i, line in enumerate(lines):
        if line and set(line) == {"-"}:
            rows = []
            for row in lines[i + 1:]:
                cells = re.split(r"\s{2,}", row.strip())
                if len(cells) != len(re.split(r"\s{2,}", lines[i - 1].strip())):
                    break
                rows.append(cells)
            found.append((re.split(r"\s{2,}", lines[i - 1].strip()), rows))
    return found


def number(cell: str) -> float:
    return float(cell.rstrip("%"))


def test_ops_table_has_a_row_per_op_with_numbers_and_no_torch_columns(capsys):
    status, out, err = bench(capsys, "ops", *TINY, "--no-torch")
    assert status == 0, err
    [(titles, rows)] = tables(out)
    assert titles == ["op", "shape", "fwd ms", "bwd ms", "fwd GF/s", "bwd GF/s", "fwd MB",
                      "fwd GB/s", "IQR"]
    assert [row[0] for row in rows] == list(DEFAULT_OPS)
    for row in rows:
        assert number(row[2]) > 0 and number(row[3]) > 0, row          # fwd, bwd ms
        assert number(row[6]) > 0 and number(row[7]) > 0, row          # MB, GB/s
        has_flops = row[0].startswith(("conv", "fc", "upscore"))
        assert (row[4] != "-") == has_flops and (row[5] != "-") == has_flops, row
    assert "# torch     left out (--no-torch)" in out
    assert "other work on the machine" in out and "check:" not in out


def test_ops_table_with_torch_has_ratio_columns_that_match_the_json(torch, capsys, tmp_path):
    path = tmp_path / "ops.json"
    status, out, err = bench(capsys, "ops", *TINY, *FEW, "--json", str(path))
    assert status == 0, err
    [(titles, rows)] = tables(out)
    assert titles[:8] == ["op", "shape", "fwd ms", "torch", "ratio", "bwd ms", "torch", "ratio"]
    data = json.loads(path.read_text())
    for row, record in zip(rows, data["rows"], strict=True):
        assert row[0] == record["name"]
        for phase, column in (("forward", 4), ("backward", 7)):
            mine = record["minifcn"][phase]["median"]
            theirs = record["torch"][phase]["median"]
            assert record["ratio"][phase] == pytest.approx(mine / theirs)   # minifcn / torch
            assert row[column] == f"{mine / theirs:.2f}"
        assert record["error"]["forward"] < 1e-5 and record["error"]["backward"] < 1e-4
    assert "check: forward outputs agree with torch" in out


def test_json_holds_the_machine_the_settings_and_every_row(capsys, tmp_path):
    path = tmp_path / "run.json"
    status, _, err = bench(capsys, "ops", *TINY, "--no-torch", "--layers", "all",
                           "--json", str(path))
    assert status == 0, err
    data = json.loads(path.read_text())
    assert data["format"] == "minifcn-bench/1"
    machine = data["machine"]
    assert {"cpu", "logical_cpus", "blas", "numpy", "minifcn", "torch", "cupy", "gpu"} <= set(
        machine)
    assert machine["logical_cpus"] >= 1 and machine["blas"]["name"]
    assert machine["gpu"] is None and data["devices"]["cpu"]["clock"] == "host clock"
    assert data["settings"]["size"] == [16, 16] and data["settings"]["ops_repeat"] == 1
    assert data["command"].startswith("minifcn bench ops --device cpu --size 16x16")
    assert [row["name"] for row in data["rows"]] == list(OPS)
    for row in data["rows"]:
        assert row["torch"] is None and row["ratio"] is None
        for phase in ("forward", "backward"):
            timing = row["minifcn"][phase]
            assert len(timing["times"]) == 1 and timing["median"] > 0
            assert row["bytes"][phase] > 0
        flops = row["flops"]["forward"]
        assert flops is None or row["flops"]["backward"] == 2 * flops


def test_fcn_table_has_times_and_peak_memory_beside_torch(torch, capsys, tmp_path):
    path = tmp_path / "fcn.json"
    status, out, err = bench(capsys, "fcn", *TINY, "--arch", "fcn32s", "--json", str(path))
    assert status == 0, err
    [(titles, rows)] = tables(out)
    assert titles == ["net", "input", "fwd s", "torch", "ratio", "step s", "torch", "ratio",
                      "peak GB", "torch", "ratio", "step GF/s"]
    assert [row[0] for row in rows] == ["fcn32s"]
    assert all(number(cell) > 0 for row in rows for cell in row[2:])
    for record in json.loads(path.read_text())["rows"]:
        assert set(record["peak"]) == {"minifcn", "torch"}
        assert all(side["rss"] > 0 and side["gpu"] is None for side in record["peak"].values())
        assert record["flops"]["step"] == 3 * record["flops"]["forward"] > 0


def test_fcn_batch_sizes_the_step_and_says_so(capsys, tmp_path):
    """--batch 2 times steps of two images: the header says so, and the FLOPs double."""
    counted = {}
    for batch in ("1", "2"):
        path = tmp_path / f"fcn{batch}.json"
        status, out, err = bench(capsys, "fcn", *TINY, "--arch", "fcn32s", "--no-torch",
                                 "--batch", batch, "--json", str(path))
        assert status == 0, err
        assert f"width 0.0625, batch {batch}, float32" in out
        counted[batch] = json.loads(path.read_text())["rows"][0]["flops"]["forward"]
    assert counted["2"] == 2 * counted["1"] > 0


def test_a_row_reads_minifcn_over_torch():
    # minifcn took 2 ms and 1 ms, torch 1 ms and 4 ms: ratios 2 (slower) and 0.25 (faster).
    row = Row("ops", "cpu", "conv", "3->4", {"forward": timing(2e-3), "backward": timing(1e-3)},
              {"forward": timing(1e-3), "backward": timing(4e-3)},
              {"forward": 4e6, "backward": 8e6}, {"forward": 1e6, "backward": None})
    assert (row.ratio("forward"), row.ratio("backward")) == (2.0, 0.25)
    assert row.to_dict()["ratio"] == {"forward": 2.0, "backward": 0.25}
    assert row.gflops("forward") == pytest.approx(2.0) and row.gbps("forward") == 0.5
    assert row.gflops("backward", "torch") == pytest.approx(2.0) and row.gbps("backward") is None
    section = Section("ops", "cpu", ("forward", "backward"), None, object(), "", 1, 0, 0.0, ())
    cells = re.split(r"\s{2,}", format_row(section, row))
    assert cells[2:8] == ["2.00", "1.00", "2.00", "1.00", "4.00", "0.25"]


def timing(seconds: float) -> Timing:
    return Timing.from_times([seconds])


def test_chart_panels_put_each_side_and_device_beside_the_others():
    def row(device, name, ms, torch_ms):
        torch = None if torch_ms is None else {"forward": timing(torch_ms / 1e3)}
        return Row("ops", device, name, "", {"forward": timing(ms / 1e3)}, torch, {}, {})

    rows = [row("cpu", "a", 2, 1), row("cpu", "b", 4, 8), row("cuda", "b", 0.5, None)]
    [panel] = chart_panels(rows)
    assert (panel.title, panel.unit, panel.names) == ("ops: forward", "ms", ("a", "b"))
    assert panel.series == {("minifcn", "cpu"): [2, 4], ("torch", "cpu"): [1, 8],
                            ("minifcn", "cuda"): [None, 0.5]}


def test_plot_writes_a_png(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "chart.png"
    status, out, err = bench(capsys, "ops", *TINY, "--no-torch", "--layers", "pool1", "loss",
                             "--plot", str(path))
    assert status == 0, err
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"wrote {path}" in out


@pytest.mark.parametrize("args, message", [
    (["nope"], "argument GROUP: invalid choice: 'nope'"),
    (["--size", "0x5"], "height and width must be positive"),
    (["--size", "big"], "expected HxW such as 500x300, or N for NxN, got 'big'"),
    (["--device", "cuda:x"], "argument --device: device must be 'cpu', 'cuda', 'cuda:N' or "
                             "'both', got 'cuda:x'"),
    (["--layers", "conv9_1"], "invalid choice: 'conv9_1'"),
    (["--repeat", "0"], "--repeat must be at least 1, got 0"),
    (["--width", "0"], "width"),
    (["fcn", "--layers", "pool1"], "--layers chooses ops; it has no effect on 'fcn'"),
    (["ops", "--arch", "fcn8s"], "--arch chooses networks"),
    (["ops", "--batch", "2"], "--batch sizes the networks' steps; it has no effect on 'ops'"),
    (["fcn", "--batch", "0"], "--batch must be at least 1, got 0"),
    (["--json", "/no/such/folder/run.json"], "--json: no such folder: /no/such/folder"),
], ids=["unknown-group", "zero-size", "bad-size", "bad-device", "unknown-op", "zero-repeat",
        "zero-width", "layers-with-fcn", "arch-with-ops", "batch-with-ops", "zero-batch",
        "json-folder"])
def test_user_errors_exit_2_with_one_line(capsys, args, message):
    status, out, err = bench(capsys, *args)
    assert status == 2 and out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("minifcn: error: ") and message in err


def test_plot_without_matplotlib_is_a_user_error(capsys, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)       # import matplotlib fails
    status, out, err = bench(capsys, *TINY, "--plot", str(tmp_path / "chart.png"))
    assert status == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert 'pip install "minifcn[plot]"' in err
    assert not (tmp_path / "chart.png").exists()


@pytest.mark.skipif(cupy_available(), reason="a GPU is usable here")
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "both"])
def test_cuda_without_cupy_is_a_user_error_with_the_install_hint(capsys, device):
    status, out, err = bench(capsys, *TINY, "--device", device)
    assert status == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert 'pip install "minifcn[gpu]"' in err


@pytest.mark.skipif(not cupy_available(), reason="CuPy with a usable GPU is not available")
def test_both_devices_give_a_table_each(capsys, tmp_path):
    path = tmp_path / "both.json"
    status, out, err = bench(capsys, "ops", *TINY, "--device", "both", "--layers", "relu1_1",
                             "upscore2", "loss", "--json", str(path))
    assert status == 0, err
    assert [len(rows) for _, rows in tables(out)] == [3, 3]
    data = json.loads(path.read_text())
    assert [row["device"] for row in data["rows"]] == ["cpu"] * 3 + ["cuda"] * 3
    assert data["machine"]["gpu"] and "CUDA events" in data["devices"]["cuda"]["clock"]


@pytest.mark.parametrize("existing", [False, True], ids=["no-file", "earlier-file"])
def test_an_interrupted_run_leaves_no_partial_json(capsys, monkeypatch, tmp_path, existing):
    path = tmp_path / "run.json"
    if existing:
        path.write_text('{"earlier": "run"}\n')
    measure, calls = minifcn.bench.runner.measure_case, []

    def interrupted(*args, **kwargs):   # the second op is interrupted (Ctrl-C)
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return measure(*args, **kwargs)

    monkeypatch.setattr(minifcn.bench.runner, "measure_case", interrupted)
    status, out, _ = bench(capsys, "ops", *TINY, "--no-torch", "--layers", "relu1_1",
                           "pool1", "loss", "--json", str(path))
    assert status == 130 and out.count("relu1_1") == 1 and "pool1 " not in out
    assert [p.name for p in tmp_path.iterdir()] == (["run.json"] if existing else [])
    assert not existing or path.read_text() == '{"earlier": "run"}\n'


@pytest.mark.parametrize("where", ["encoding", "fsync"])
def test_a_json_write_that_fails_halfway_leaves_no_file(monkeypatch, tmp_path, where):
    def disk_full(*args, **kwargs):
        raise OSError("disk full")

    if where == "encoding":       # the file is open, nothing written yet
        monkeypatch.setattr(minifcn.bench.results.json, "dumps", disk_full)
    else:                         # the bytes are written; making them durable fails
        monkeypatch.setattr(minifcn.io.os, "fsync", disk_full)
    with pytest.raises(OSError, match="disk full"):
        minifcn.bench.results.write_json(tmp_path / "run.json", {"rows": []})
    assert list(tmp_path.iterdir()) == []


def test_the_command_runs_as_a_program_with_the_bar_on_stderr(tmp_path):
    path = tmp_path / "run.json"
    args = [a for a in TINY if a != "--no-progress"]
    done = subprocess.run([sys.executable, "-m", "minifcn", "bench", "ops", *args, "--no-torch",
                           "--layers", "relu1_1", "pool1", "--json", str(path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    [(_, rows)] = tables(done.stdout)
    assert [row[0] for row in rows] == ["relu1_1", "pool1"]
    assert "%|" not in done.stdout and "case" in done.stderr and "Traceback" not in done.stderr
    assert done.stdout.rstrip().endswith(f"wrote {path}")
    assert len(json.loads(path.read_text())["rows"]) == 2


def test_importing_the_command_imports_neither_torch_nor_matplotlib_nor_cupy():
    code = ("import sys, minifcn.cli, minifcn.bench.runner, minifcn.bench.chart, "
            "minifcn.bench.report; minifcn.cli.build_parser(); "
            "print(sorted({'torch', 'matplotlib', 'cupy'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_cases_follow_the_network_shapes():
    cases = fcn_cases((500, 500))
    assert cases["conv1_2"].shape == "64->64 3x3 p1 698->698"
    assert cases["fc6"].shape == "512->4096 7x7 22->16"
    assert cases["upscore8"].shape == "21x70 k16 s8 ->568"
    assert cases["crop"].shape == "21x568 @31 ->500"
    with pytest.raises(ValueError, match="unknown op 'conv9_1'"):
        fcn_cases((16, 16), names=("conv9_1",))


def test_network_rows_line_up_under_their_titles_whatever_the_names_length():
    """Every figure of a network row ends where its title ends, for the longest name too."""
    from minifcn.bench.network import ARCHS
    from minifcn.bench.report import columns
    from minifcn.bench.table import table_head

    section = Section("fcn", "cpu", ("forward", "step"), None, object(), "", 1, 0, 0.0, ())
    titles = table_head(columns(section))[0]
    ends = [m.end() for m in re.finditer(r"\S+( \S+)*", titles)][2:]     # the figures' titles
    for arch in ARCHS:
        row = Row("fcn", "cpu", arch, "520x520 width 1",
                  {"forward": timing(2.5), "step": timing(9.0)},
                  {"forward": timing(1.25), "step": timing(3.0)},
                  {"forward": 1e11, "step": 3e11}, {"forward": None, "step": None},
                  peak={"minifcn": {"rss": 2**31, "gpu": None},
                        "torch": {"rss": 2**30, "gpu": None}})
        line = format_row(section, row)
        assert [m.end() for m in re.finditer(r"\S+( \S+)*", line)][2:] == ends, (arch, line)


def test_op_rows_line_up_under_their_titles_whatever_the_names_length():
    """The op and shape columns are as wide as the section's longest name and shape."""
    from minifcn.bench.report import columns
    from minifcn.bench.table import table_head

    labels = (("conv1", "3->64 7x7 s2 p3 520->260"),
              ("layer2.0.downsample.0", "2048->256 3x3 p36 d36 1040->1040"))
    section = Section("ops", "cpu", ("forward", "backward"), None, object(), "", 1, 0, 0.0, (),
                      labels)
    titles = table_head(columns(section))[0]
    ends = [m.end() for m in re.finditer(r"\S+( \S+)*", titles)][2:]     # the figures' titles
    for name, shape in labels:
        row = Row("ops", "cpu", name, shape, {"forward": timing(2e-3), "backward": timing(1e-3)},
                  {"forward": timing(1e-3), "backward": timing(4e-3)},
                  {"forward": 4e6, "backward": 8e6}, {"forward": 1e6, "backward": 2e6})
        line = format_row(section, row)
        assert line.startswith(f"{name} ") and line.index(shape) == titles.index("shape")
        assert [m.end() for m in re.finditer(r"\S+( \S+)*", line)][2:] == ends, (name, line)
