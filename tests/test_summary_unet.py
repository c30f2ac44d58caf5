"""``minifcn.summary`` of a U-Net (its rows against the real forward, the paper's sizes, the
skip crops' offsets derived from the coordinate maps) and of a grouped convolution's
FLOPs and channels."""
import numpy as np
import pytest

from minifcn.models import UNet
from minifcn.nn import Conv2d, Crop, Sequential
from minifcn.summary import format_summary, summarize, totals
from minifcn.summary.trace import _Trace


def observed_shapes(model, x):
    """Run the real forward; every leaf layer's output shape by its dotted name."""
    shapes = {}
    for name, module in model.named_modules():
        if name and not any(True for _ in module.named_children()):
            def recording(*args, _forward=module.forward, _name=name):
                y = _forward(*args)
                shapes[_name] = tuple(y.shape)
                return y
            module.forward = recording
    return tuple(model(x).shape), shapes


@pytest.mark.parametrize("depth, hw", [(1, (18, 22)), (2, (44, 52))])
def test_every_row_shape_matches_the_real_forward(depth, hw):
    model = UNet(3, in_channels=2, base=2, depth=depth, rng=0)
    rows = summarize(model, hw, batch=2)
    x = np.random.default_rng(0).standard_normal((2, 2, *hw)).astype(np.float32)
    y_shape, shapes = observed_shapes(model, x)
    assert rows[0].shape == (2, 2, *hw) and rows[-1].shape == y_shape
    layers = {row.name: row.shape for row in rows if row.name in shapes}
    assert layers == shapes                          # every layer has its row, of its shape
    for row in rows:
        if row.kind == "concat":
            skip, up = (next(r for r in rows if r.name == n) for n in row.inputs)
            assert row.shape[1] == skip.shape[1] + up.shape[1] and row.coord == up.coord
    assert totals(rows).params == sum(p.data.size for p in model.parameters())


def test_the_papers_unet_at_572():
    rows = summarize(UNet(2, base=64, depth=4, init="zeros"), 572)
    by_name = {row.name: row for row in rows}
    assert rows[-1].shape == (1, 2, 388, 388)
    assert {row.name: row.offset[0] for row in rows if row.kind == "crop"} == \
        {"crop.3": 4, "crop.2": 16, "crop.1": 40, "crop.0": 88}
    assert rows[-1].coord.scale == 1 and rows[-1].coord.offset == -92   # the 92-pixel border
    assert by_name["encoder.0.2"].flops == 2 * 64 * 568 * 568 * 64 * 9
    assert totals(rows).params == 31_031_810
    text = format_summary(rows)
    assert "crop.0       crop +88      encoder.0.3 to up.0  1x64x392x392" in text
    assert "unpadded (valid) convolutions shift every map" in text


def test_a_unet_crop_that_disagrees_with_the_coordinate_maps_is_reported():
    model = UNet(2, base=2, depth=2, rng=0)
    setattr(model.crop, "0", Crop(15))
    with pytest.raises(ValueError, match=r"crop.0 crops at \(15, 15\) but the coordinate "
                                         "maps give 16"):
        summarize(model, 44)


def test_a_grouped_convolution_counts_one_groups_channels():
    conv = Conv2d(8, 6, 3, groups=2, padding=1, dtype=np.float64)
    trace = _Trace(Sequential(conv), itemsize=8)
    row = trace.layer(conv, trace.input((2, 8, 9, 9)))
    assert row.shape == (2, 6, 9, 9) and row.detail == "3x3 p1 g2"
    assert row.flops == 2 * 2 * 6 * 9 * 9 * (8 // 2) * 9          # C/G = 4 inputs per output
    assert row.workspace == 8 * 9 * 2 * 9 * 9 * 8                  # im2col of all 8 channels
    assert row.params == conv.weight.data.size + 6
    with pytest.raises(ValueError, match="0 expects 8 input channels, input has 6"):
        trace.layer(conv, trace.input((2, 6, 9, 9)))


def test_cli_summarises_the_papers_unet_and_refuses_odd_sizes(capsys):
    from minifcn import cli

    assert cli.main(["summary", "unet", "--size", "572", "--n-class", "2"]) == 0
    out = capsys.readouterr().out
    assert "total: 31,031,810 parameters" in out and "1x2x388x388" in out
    assert cli.main(["summary", "unet", "--size", "572x570"]) == 2
    err = capsys.readouterr().err
    assert "summary: UNet(depth=4) cannot take width 570: its level-1 map would be 279 " \
           "pixels, odd before the 2x2 pool" in err and "the nearest are 556 or 572" in err
