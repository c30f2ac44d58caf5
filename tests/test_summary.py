"""minifcn.summary and `minifcn summary`: shapes, parameters, FLOPs, workspace, receptive
fields and crop offsets, computed without running the network -- and checked against the
real forward, the models' own parameters and counts done by hand."""
import subprocess
import sys

import numpy as np
import pytest

from minifcn import cli
from minifcn.backend import asnumpy
from minifcn.models import ARCHITECTURES
from minifcn.models.coord import IDENTITY
from minifcn.nn import Crop, ReLU
from minifcn.summary import format_summary, skeleton, summarize, summarize_arch, totals

ARCHS = list(ARCHITECTURES)
OFFSETS = {"fcn32s": {"crop_output": 19},
           "fcn16s": {"crop_pool4": 5, "crop_output": 27},
           "fcn8s": {"crop_pool4": 5, "crop_pool3": 9, "crop_output": 31},
           "fcn8s-atonce": {"crop_pool4": 5, "crop_pool3": 9, "crop_output": 31}}


def small(arch, **options):
    options = {"n_class": 3, "width": 1 / 32, **options}
    return ARCHITECTURES[arch](rng=0, **options)


def by_name(rows):
    return {row.name: row for row in rows}


def observed_shapes(model, x):
    """Run the real forward; record every layer's output shape and its first input's."""
    outputs, inputs = {}, {}
    for name, module in model.named_children():
        def recording(*args, _forward=module.forward, _name=name):
            y = _forward(*args)
            inputs[_name], outputs[_name] = tuple(args[0].shape), tuple(y.shape)
            return y
        module.forward = recording        # an instance attribute: Module.__call__ finds it
    y = model(x)
    return tuple(y.shape), outputs, inputs


# --- shapes: the summary against the real forward ------------------------------------------

@pytest.mark.parametrize("hw", [(1, 1), (23, 36)], ids=["1x1", "23x36"])
@pytest.mark.parametrize("arch", ARCHS)
def test_every_row_shape_matches_the_real_forward(xp, arch, hw):
    model = small(arch).eval().to(device="cpu" if xp is np else "cuda")
    x = xp.asarray(np.random.default_rng(1).standard_normal((2, 3) + hw).astype(np.float32))
    rows = summarize(model, hw, batch=2)
    y_shape, outputs, inputs = observed_shapes(model, x)
    assert rows[-1].shape == y_shape == (2, 3) + hw
    pools = model.forward_trunk(x)
    assert [by_name(rows)[f"pool{b}"].shape for b in (3, 4, 5)] == \
        [asnumpy(p).shape for p in pools]
    checked = 0
    for row in rows:
        if row.name in outputs:                       # a layer of the model
            assert row.shape == outputs[row.name], row.name
            checked += 1
        readers = [r.name for r in rows if r.inputs[:1] == (row.name,) and r.name in inputs]
        for reader in readers:                        # sums, scales, the input: what reads them
            assert row.shape == inputs[reader], (row.name, reader)
        checked += row.name not in outputs and bool(readers)
    assert checked == len(rows)


@pytest.mark.parametrize("arch", ARCHS)
def test_output_has_the_input_size_for_every_size(arch):
    model = small(arch)
    sizes = [(h, w) for h in (1, 2, 3, 7, 16, 31, 32, 33, 63, 64, 65, 97, 100, 500)
             for w in (1, 5, 32, 47, 96, 500)]
    for h, w in sizes:
        assert summarize(model, (h, w), batch=3)[-1].shape == (3, 3, h, w), (h, w)


def test_vgg_shapes_at_500_by_hand():
    rows = by_name(summarize_arch("fcn8s", (500, 500)))
    assert rows["conv1_1"].shape == (1, 64, 698, 698)          # 500 + 2*100 - 3 + 1
    assert [rows[f"pool{b}"].shape[2] for b in range(1, 6)] == [349, 175, 88, 44, 22]   # ceil
    assert rows["fc6"].shape == (1, 4096, 16, 16)              # 22 - 7 + 1
    assert [rows[n].shape[2] for n in ("upscore2", "upscore_pool4", "upscore8")] == \
        [34, 70, 568]                                          # (n - 1)S + K


# --- parameters ----------------------------------------------------------------------------

@pytest.mark.parametrize("learn", [False, True], ids=["frozen-upscore", "learned-upscore"])
@pytest.mark.parametrize("arch", ARCHS)
def test_parameter_totals_equal_the_models(arch, learn):
    model = small(arch, width=1 / 16, n_class=5, learn_upsampling=learn)
    t = totals(summarize(model, (40, 40)))
    params = model.parameters()
    assert t.params == sum(p.data.size for p in params if p.requires_grad)
    assert t.frozen == sum(p.data.size for p in params if not p.requires_grad)
    assert (t.frozen > 0) != learn


def fcn8s_parameters_by_hand(n_class=21):
    """(learnable, frozen) of FCN-8s at width 1, from the layer list of the paper."""
    channels = [3, 64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    trunk = sum(c_out * c_in * 3 * 3 + c_out for c_in, c_out in zip(channels, channels[1:]))
    assert trunk == 14_714_688                                  # VGG16's convolutions
    head = (4096 * 512 * 7 * 7 + 4096) + (4096 * 4096 + 4096) + (n_class * 4096 + n_class)
    skips = (n_class * 512 + n_class) + (n_class * 256 + n_class)
    upscores = n_class * n_class * (4 * 4 + 4 * 4 + 16 * 16)   # frozen, no bias
    return trunk + head + skips, upscores


def test_fcn8s_at_width_1_has_134m_parameters_as_counted_by_hand():
    t = totals(summarize_arch("fcn8s", (500, 500)))
    assert (t.params, t.frozen) == fcn8s_parameters_by_hand() == (134_362_751, 127_008)
    assert totals(summarize_arch("fcn8s", 64, n_class=3)).frozen == 3 * 3 * 288


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("arch", ARCHS)
def test_skeleton_has_the_real_models_structure_without_its_weights(arch, dtype):
    real = ARCHITECTURES[arch](n_class=4, width=1 / 8, dtype=dtype, rng=0)
    fake = skeleton(arch, n_class=4, width=1 / 8, dtype=dtype)

    def structure(m):
        return [(n, p.shape, p.dtype, p.requires_grad) for n, p in m.named_parameters()]
    assert structure(fake) == structure(real)
    assert summarize(fake, (37, 41), batch=2) == summarize(real, (37, 41), batch=2)
    assert not fake.fc6.weight.data.any()                      # zeros: nothing was drawn


# --- FLOPs and workspace by hand -----------------------------------------------------------

def test_flops_and_workspace_by_hand_at_500():
    rows = by_name(summarize_arch("fcn8s", (500, 500)))
    assert rows["fc6"].flops == 2 * 4096 * 16 * 16 * 512 * 7 * 7
    assert rows["upscore8"].flops == 2 * 21 * 70 * 70 * 21 * 16 * 16    # each input a patch
    assert rows["pool1"].flops == 64 * 349 * 349 * 3 and rows["relu1_1"].flops == 64 * 698**2
    assert rows["conv1_2"].workspace == 64 * 9 * 698 * 698 * 4 == 1_122_518_016   # 1.05 GiB
    assert rows["upscore8"].workspace == 21 * 16 * 16 * 70 * 70 * 4    # col2im's columns
    assert rows["fc7"].workspace == rows["score_fr"].workspace == 0     # 1x1: no im2col
    assert totals(rows.values()).workspace_layer == "conv1_2"
    doubled = by_name(summarize_arch("fcn8s", (500, 500), batch=2, dtype=np.float64))
    assert doubled["conv1_2"].workspace == 4 * rows["conv1_2"].workspace
    assert doubled["fc6"].flops == 2 * rows["fc6"].flops


# --- receptive fields and coordinate maps --------------------------------------------------

def test_receptive_fields_follow_the_recurrence_whatever_the_padding():
    expected, rf, jump = {}, 1, 1
    for block, n_convs in enumerate((2, 2, 3, 3, 3), start=1):
        rf += n_convs * (3 - 1) * jump            # r' = r + (K - 1) j for each 3x3 conv
        rf, jump = rf + (2 - 1) * jump, 2 * jump  # the 2x2 stride-2 pool
        expected[f"pool{block}"] = (rf, jump)
    assert expected["pool5"] == (212, 32)
    for hw in ((500, 500), (1, 1)):
        rows = by_name(summarize_arch("fcn8s", hw))
        for name, (rf, jump) in expected.items():
            assert (rows[name].rf, rows[name].jump) == (rf, jump), name
        assert rows["fc6"].rf == rows["score_fr"].rf == 212 + (7 - 1) * 32 == 404
        assert (rows["score_pool4"].rf, rows["score_pool3"].rf) == (100, 44)
        assert (rows["upscore2"].rf, rows["upscore2"].jump) == (404 + 32, 16)   # 2 inputs


@pytest.mark.parametrize("arch", ARCHS)
def test_crop_offsets_are_derived_from_the_coordinate_maps(arch):
    model = small(arch)
    rows = by_name(summarize(model, (50, 70)))
    crops = {name: row.offset for name, row in rows.items() if row.kind == "crop"}
    assert crops == {name: (k, k) for name, k in OFFSETS[arch].items()}
    assert crops == {name: getattr(model, name).offset for name in crops}
    for name in crops:                             # after a crop, both maps coincide
        assert rows[name].coord == rows[rows[name].inputs[1]].coord
    assert rows["crop_output"].coord == IDENTITY
    assert rows["conv1_1"].coord.offset == 100 - 1     # input pixel 0 lands on pixel 99


def test_a_crop_that_disagrees_with_the_coordinate_maps_is_reported():
    model = small("fcn16s")
    model.crop_pool4 = Crop(6)
    with pytest.raises(ValueError, match=r"crop_pool4 crops at \(6, 6\) but the coordinate "
                                         "maps give 5"):
        summarize(model, 32)


# --- the table ------------------------------------------------------------------------------

def test_format_summary_prints_aligned_columns_totals_and_offsets():
    rows = summarize_arch("fcn8s", (500, 500))
    text = format_summary(rows, title="fcn8s at 500x500")
    lines = text.splitlines()
    assert lines[0] == "fcn8s at 500x500"
    header, table = lines[1], lines[2:2 + len(rows)]
    column = header.index("output")
    assert all(line[column:].startswith("x".join(map(str, row.shape)))
               for line, row in zip(table, rows))
    assert "total: 134,489,759 parameters (134.5M): 134,362,751 learnable, 127,008 frozen" \
        in text
    assert "363 GFLOP forward; largest im2col workspace 1.05 GiB (conv1_2)" in text
    assert ("crop offsets derived from coordinate maps: score_pool4 5, score_pool3 9, "
            "upscore8 31") in text
    assert "conv1_1's padding (3x3 p100)" in text
    line = {row.name: table[i] for i, row in enumerate(rows)}
    assert "7,056*" in line["upscore2"]
    assert line["score_pool4"].split()[:4] == ["score_pool4", "conv", "1x1", "pool4"]
    assert "score_pool4 to upscore2" in line["crop_pool4"]
    assert "upscore2 + crop_pool4" in line["fuse_pool4"]
    assert line["conv1_2"].split()[:5] == ["conv1_2", "conv", "3x3", "p1", "1x64x698x698"]


# --- errors ---------------------------------------------------------------------------------

@pytest.mark.parametrize("args, error, match", [
    ((small("fcn8s"), 0), ValueError, "input_hw must be positive"),
    ((small("fcn8s"), (2, 3, 4)), TypeError, "input_hw must be an int or a pair"),
    ((small("fcn8s"), 5, 0), ValueError, "batch must be positive"),
    ((ReLU(), 5), TypeError, "model must be one of fcn32s, fcn16s, fcn8s"),
], ids=["zero-size", "three-sizes", "zero-batch", "not-an-fcn"])
def test_bad_arguments_name_the_argument(args, error, match):
    with pytest.raises(error, match=match):
        summarize(*args)


def test_skeleton_refuses_an_unknown_architecture():
    with pytest.raises(ValueError, match="arch must be one of fcn32s.*got 'fcn4s'"):
        skeleton("fcn4s")


# --- the command line -----------------------------------------------------------------------

def run_cli(*args):
    done = subprocess.run([sys.executable, "-m", "minifcn", *args], capture_output=True,
                          text=True, timeout=120)
    return done.returncode, done.stdout, done.stderr


def test_cli_prints_the_fcn8s_table_at_500():
    status, out, err = run_cli("summary", "--arch", "fcn8s", "--size", "500")
    assert status == 0, err
    assert out.startswith("fcn8s, width 1, n_class 21, input 1x3x500x500 (500x500), float32")
    assert "total: 134,489,759 parameters" in out
    assert "score_pool4 5, score_pool3 9, upscore8 31" in out


def test_cli_options_reach_the_summary(capsys):
    assert cli.main(["summary", "--arch", "fcn32s", "--size", "64x48", "--width", "0.0625",
                     "--n-class", "3", "--batch", "2", "--dtype", "float64"]) == 0
    out = capsys.readouterr().out
    expected = totals(summarize_arch("fcn32s", (64, 48), batch=2, width=0.0625, n_class=3))
    assert "input 2x3x64x48 (64x48), float64" in out
    assert f"total: {expected.params + expected.frozen:,} parameters" in out
    assert "upscore 19" in out and "2x3x64x48" in out


@pytest.mark.parametrize("args, message", [
    (["--size", "500x"], "argument --size/--input: expected HxW such as 500x300, or N for "
                         "NxN, got '500x'"),
    (["--size", "0x5"], "height and width must be positive, got '0x5'"),
    (["--size", "5x5", "--width", "2"], "width must be a number in (0, 1], got 2.0"),
    (["--size", "5x5", "--batch", "0"], "batch must be positive"),
    (["--size", "5x5", "--n-class", "0"], "n_class must be positive"),
    ([], "the following arguments are required: --size/--input"),
], ids=["no-width", "zero-height", "wide", "zero-batch", "zero-classes", "no-size"])
def test_cli_user_errors_exit_2_with_one_line(capsys, args, message):
    assert cli.main(["summary", "--arch", "fcn8s", *args]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err


def test_cli_unknown_architecture_exits_2():
    status, out, err = run_cli("summary", "--arch", "fcn4s", "--size", "500x500")
    assert status == 2 and out == "" and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert "invalid choice: 'fcn4s' (choose from 'fcn32s', 'fcn16s', 'fcn8s'" in err
