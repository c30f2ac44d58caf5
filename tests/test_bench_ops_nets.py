"""`minifcn bench ops --net`: the layers of FCN-8s, FCN-ResNet50, DeepLabV3-ResNet50 and
U-Net as op cases at the shapes their summaries give. Every case of every net runs on both
sides and agrees with torch, takes its row's output shape, and (batch norm) runs in training
mode; the table, JSON and chart work for each net; a net's default size is its own; a bad
--net and another net's op are one-line errors. Tiny sizes and one timed call: no timing is
asserted."""
import importlib.util
import json
import re

import numpy as np
import pytest

import minifcn.cli.bench
from minifcn import cli
from minifcn.bench.measure import make_timer, measure_case
from minifcn.bench.net_cases import NETS, op_cases
from minifcn.summary import summarize_arch

# Small maps, a sixteenth of the channels; U-Net's smallest valid side is 188 (S + 4 a
# multiple of 16), its width 204 the next. Non-square, so that height and width are not
# confused.
SIZES = {"fcn8s": (16, 20), "fcn_resnet50": (32, 40), "deeplabv3_resnet50": (32, 40),
         "unet": (188, 204)}
WIDTH, N_CLASS = 1 / 16, 5
# How far torch's results may be from minifcn's, as max|diff| / max|y| (measure_case's
# ``error``). Each output and gradient is a sum of at most K ~ 4e4 products here (U-Net's
# top 3x3 weight gradient: 184 x 200 positions), and rounding errors of random sign grow as
# sqrt(K) u: 200 u, 2.2e-14 in float64 and 1.2e-5 in float32 (u = 2^-53, 2^-24); allowing
# 1e3 times that for the terms' magnitudes against max|y| gives 2e-11 and 1e-2. Any mistake
# in a case (a dilation, a mode, an offset) moves results by order 1; float64 is the sharp
# check, float32 runs the paths that are timed.
TOLERANCE = {"float64": 2e-11, "float32": 1e-2}


def cases_of(net):
    return op_cases(net, SIZES[net], WIDTH, N_CLASS, NETS[net].ops)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("net", list(NETS))
def test_every_case_runs_both_sides_and_agrees_with_torch(torch, net, dtype):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)              # tiny layers: OpenMP's barriers cost more than they save
    try:
        timer = make_timer(repeat=1, warmup=0)
        for name, case in cases_of(net).items():
            row = measure_case(case, timer, torch=torch, dtype=dtype, settle=0.0)
            for side in (row.minifcn, row.torch):
                assert all(side[phase].median > 0 for phase in ("forward", "backward")), name
            assert row.error["forward"] <= TOLERANCE[dtype], (name, row.error)
            assert row.error["backward"] <= TOLERANCE[dtype], (name, row.error)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("net", list(NETS))
def test_every_case_gives_the_output_its_summary_row_has(net):
    """A case computes what its layer does in the network: its output has the shape of the
    summary row it was built from (bilinear and loss compute what replaces the row)."""
    rows = {row.name: row for row in summarize_arch(net, SIZES[net], width=WIDTH,
                                                    n_class=N_CLASS)}
    rng = np.random.default_rng(0)
    for name, case in cases_of(net).items():
        row, kind = NETS[net].table[name]
        y, _ = case.forward(np.random.default_rng(1), **case.inputs(rng, np.dtype("float64")))
        if kind == "loss":
            assert y.shape == ()
        elif kind == "bilinear":
            assert y.shape[2:] == SIZES[net]
        else:
            assert y.shape == rows[row].shape, (name, row)


@pytest.mark.parametrize("net", ["fcn_resnet50", "deeplabv3_resnet50"])
def test_batch_norm_is_timed_in_training_mode(net):
    """Training mode normalises by the batch: every channel of y has mean beta and standard
    deviation |gamma| (up to eps), whatever the running estimates; its cache says so."""
    bns = {name: case for name, case in cases_of(net).items()
           if NETS[net].table[name][1] == "batch_norm"}
    assert set(bns) == {"bn1", "layer4.1.bn3"}
    for name, case in bns.items():
        arrays = case.inputs(np.random.default_rng(0), np.dtype("float64"))
        arrays["x"] = 3.0 * arrays["x"] + 2.0                 # far from running mean 0, var 1
        y, cache = case.forward(None, **arrays)
        assert cache.training, name
        np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), arrays["bias"], atol=1e-9)
        np.testing.assert_allclose(y.std(axis=(0, 2, 3)), np.abs(arrays["weight"]), rtol=1e-4)


def test_the_resnets_and_unet_cases_have_their_networks_shapes():
    fcn = op_cases("fcn_resnet50", names=NETS["fcn_resnet50"].ops)           # 520x520
    deeplab = op_cases("deeplabv3_resnet50", names=NETS["deeplabv3_resnet50"].ops)
    unet = op_cases("unet", names=NETS["unet"].ops)                           # 572x572
    assert {name: fcn[name].shape for name in ("conv1", "bn1", "maxpool", "layer2.0.conv2",
                                               "layer3.1.conv2", "layer4.1.conv2",
                                               "layer4.1.conv1", "layer4.1.conv3",
                                               "head.conv", "upsample", "loss")} == {
        "conv1": "3->64 7x7 s2 p3 520->260", "bn1": "64x260 train",
        "maxpool": "64x260 k3 s2 p1", "layer2.0.conv2": "128->128 3x3 s2 p1 130->65",
        "layer3.1.conv2": "256->256 3x3 p2 d2 65->65",
        "layer4.1.conv2": "512->512 3x3 p4 d4 65->65",
        "layer4.1.conv1": "2048->512 1x1 65->65", "layer4.1.conv3": "512->2048 1x1 65->65",
        "head.conv": "2048->512 3x3 p1 65->65", "upsample": "21x65 ->520",
        "loss": "21x520 10% void"}
    for rate in (12, 24, 36):
        assert deeplab[f"aspp.rate{rate}"].shape == f"2048->256 3x3 p{rate} d{rate} 65->65"
    assert deeplab["aspp.pool"].shape == "2048x65 ->1"
    assert deeplab["aspp.concat"].shape == "5*256x65 ->1280"
    assert (unet["encoder.0.2"].shape, unet["up.0"].shape, unet["crop.0"].shape,
            unet["concat.0"].shape, unet["loss"].shape) == (
        "64->64 3x3 570->568", "128x196 k2 s2 ->392", "64x568 @88 ->392", "64+64x392 ->128",
        "21x388 10% void")


TINY = ["--width", "0.0625", "--repeat", "1", "--warmup", "0", "--min-time", "0",
        "--no-progress"]


def bench(capsys, *args):
    status = cli.main(["bench", *args])
    out, err = capsys.readouterr()
    return status, out, err


def table_lines(out: str) -> list:
    """The titles line, then each row, of the one table in ``out``."""
    lines = out.splitlines()
    rule = next(i for i, line in enumerate(lines) if line and set(line) == {"-"})
    end = next(i for i in range(rule + 1, len(lines)) if not lines[i].strip()
               or lines[i].startswith("times in"))
    return [lines[rule - 1]] + lines[rule + 1:end]


def ends(line: str) -> list:
    """Where each cell of a line ends (cells are 2+ spaces apart; a cell may hold one)."""
    return [m.end() for m in re.finditer(r"\S+( \S+)*", line)]


@pytest.mark.parametrize("net", list(NETS))
def test_each_net_gives_a_table_of_its_default_ops_and_a_json_record(capsys, tmp_path, net):
    h, w = SIZES[net]
    path = tmp_path / "run.json"
    status, out, err = bench(capsys, "ops", "--net", net, "--size", f"{h}x{w}", *TINY,
                             "--no-torch", "--json", str(path))
    assert status == 0, err
    assert f"{NETS[net].title} layer shapes for a {h}x{w} image" in out
    titles, *rows = table_lines(out)
    assert [row.split()[0] for row in rows] == list(NETS[net].default)
    for row in rows:                  # every figure ends where its title ends
        assert ends(row)[2:] == ends(titles)[2:], row
        assert row.index(row.split()[1]) == titles.index("shape"), row
    data = json.loads(path.read_text())
    assert [row["name"] for row in data["rows"]] == list(NETS[net].default)
    assert data["settings"]["net"] == net and data["settings"]["size"] == [h, w]
    assert f"--net {net} --layers {' '.join(NETS[net].default)}" in data["command"]


def test_a_net_with_torch_checks_every_row_and_draws_a_chart(torch, capsys, tmp_path):
    path, chart = tmp_path / "run.json", tmp_path / "chart.png"
    plot = importlib.util.find_spec("matplotlib") is not None     # the chart where it can
    status, out, err = bench(capsys, "ops", "--net", "deeplabv3_resnet50", "--size", "32x40",
                             *TINY, "--layers", "bn1", "layer2.0.downsample.0",
                             "aspp.rate36", "aspp.pool", "aspp.concat", "--json", str(path),
                             *(["--plot", str(chart)] if plot else []))
    assert status == 0, err
    titles, *rows = table_lines(out)
    assert titles.split()[:2] == ["op", "shape"] and len(rows) == 5
    assert ends(rows[1])[2:] == ends(titles)[2:]          # the longest name fits its column
    assert "check: forward outputs agree with torch" in out
    assert all(row["error"]["backward"] < 1e-3 for row in json.loads(path.read_text())["rows"])
    assert not plot or chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("argv, size", [
    (["ops"], (500, 500)), (["ops", "--net", "fcn_resnet50"], (520, 520)),
    (["ops", "--net", "deeplabv3_resnet50"], (520, 520)), (["ops", "--net", "unet"], (572, 572)),
    (["ops", "--net", "unet", "--size", "188"], (188, 188)), (["fcn"], (500, 500)),
    (["all", "--net", "fcn_resnet50"], (520, 520)),
], ids=["fcn8s", "fcn_resnet50", "deeplabv3", "unet", "given", "fcn-group", "all-group"])
def test_the_default_size_is_the_nets(argv, size):
    plan = minifcn.cli.bench._plan(cli.build_parser().parse_args(["bench", *argv]))
    assert plan.size == size
    assert plan.ops == (NETS[plan.net].default if "ops" in plan.groups else plan.ops)


@pytest.mark.parametrize("args, message", [
    (["--net", "vgg16"], "argument --net: invalid choice: 'vgg16'"),
    (["--layers", "layer3.1.conv2"], "--layers layer3.1.conv2 is not an op of --net fcn8s; "
                                     "its ops: conv1_1 relu1_1"),
    (["--net", "unet", "--layers", "up.0", "conv1_1"], "--layers conv1_1 is not an op of "
                                                        "--net unet"),
    (["--net", "fcn_resnet50", "--layers", "aspp.rate12"], "--layers aspp.rate12 is not an op "
                                                           "of --net fcn_resnet50"),
    (["fcn", "--net", "unet"], "--net chooses the layers of 'ops'; it has no effect on 'fcn'"),
    (["--net", "unet", "--size", "64"], "bench: UNet(depth=4) cannot take height 64"),
    (["--net", "fcn_resnet50", "--size", "8", "--layers", "layer4.1.bn3"],
     "layer4.1.bn3 sees one value per channel (1x1 map, batch 1)"),
], ids=["unknown-net", "resnet-op-for-fcn8s", "fcn8s-op-for-unet", "deeplab-op-for-fcn",
        "net-with-fcn", "unet-size", "bn-on-one-pixel"])
def test_net_errors_exit_2_with_one_line(capsys, args, message):
    status, out, err = bench(capsys, "ops", *args) if args[0] != "fcn" else bench(capsys, *args)
    assert status == 2 and out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("minifcn: error: ") and message in err
