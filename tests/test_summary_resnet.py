"""``minifcn.summary`` of torchvision's FCN-ResNet50 and DeepLabV3-ResNet50: every layer's
row against the real forward, residual sums and ASPP's concatenation of five branches, the
image pooling broadcast back, the parameter counts torchvision's weights record, and the
half-pixel shift that bilinear upsampling from stride 8 leaves (3.5 input pixels)."""
import numpy as np
import pytest

from minifcn import cli
from minifcn.models import RESNET_MODELS
from minifcn.summary import summarize, summarize_arch, totals

from test_summary_unet import observed_shapes

COUNTS = {"fcn_resnet50": 35_322_218, "deeplabv3_resnet50": 42_004_074}


@pytest.mark.parametrize("aux", [True, False])
@pytest.mark.parametrize("arch", RESNET_MODELS)
def test_every_row_shape_matches_the_real_forward(arch, aux):
    model = RESNET_MODELS[arch](n_class=3, aux=aux, width=1 / 16, rng=0).eval()
    rows = summarize(model, (37, 45), batch=2)
    x = np.random.default_rng(0).standard_normal((2, 3, 37, 45)).astype(np.float32)
    y_shape, shapes = observed_shapes(model, x)
    assert rows[-1].name == "output" and rows[-1].shape == y_shape == (2, 3, 37, 45)
    assert {row.name: row.shape for row in rows if row.name in shapes} == shapes
    assert ("aux_output" in {row.name for row in rows}) == aux
    assert totals(rows).params == sum(p.data.size for p in model.parameters())
    adds = [row for row in rows if row.kind == "sum"]
    assert len(adds) == 16 and all(row.name.endswith(".add") for row in adds)


def test_aspp_concatenates_five_branches_with_the_pooled_one_broadcast():
    rows = {row.name: row for row in summarize_arch("deeplabv3_resnet50", 64, width=1 / 16)}
    concat = rows["classifier.0.concat"]
    assert len(concat.inputs) == 5 and concat.shape == (1, 80, 8, 8)
    pooled, resized = rows["classifier.0.convs.4.0"], rows["classifier.0.convs.4.resize"]
    assert pooled.shape == (1, 128, 1, 1) and pooled.coord.scale == 0
    assert resized.coord == concat.coord and resized.flops == 0


@pytest.mark.parametrize("arch", RESNET_MODELS)
def test_width_1_at_520(arch):
    rows = summarize_arch(arch, 520)
    assert totals(rows).params == COUNTS[arch]
    out = rows[-1]
    assert out.shape == (1, 21, 520, 520)
    # features at stride 8 centre pixel p on input 8p; align_corners=False assumes 8p + 3.5
    assert (out.coord.scale, out.coord.offset) == (1, 3.5)
    conv = {row.name: row for row in rows}["backbone.layer4.0.conv2"]
    assert conv.detail == "3x3 p2 d2" and conv.shape == (1, 512, 65, 65)
    assert conv.flops == 2 * 512 * 65 * 65 * 512 * 9


def test_cli_summarises_the_resnets(capsys):
    assert cli.main(["summary", "deeplabv3_resnet50", "--size", "64", "--width",
                     "0.0625"]) == 0
    out = capsys.readouterr().out
    assert "classifier.0.convs.0.2 + 4 more" in out and "bn 2, bilinear resize 7" in out
