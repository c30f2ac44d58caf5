"""U-Net through weight files and ``predict``: its options read back from the arrays, the
image's border mirrored outwards (the paper's overlap-tile) so that every pixel gets a
score, aligned as the coordinate maps say, and the labels equal to the plain-torch U-Net's
on the same mirrored input."""
import numpy as np
import pytest
from PIL import Image

from minifcn import cli
from minifcn.inference import model_from_weights, predict
from minifcn.io import WeightsError, read_weights, save_weights, write_weights
from minifcn.models import UNet
from minifcn.models.unet_sizes import output_size, tile_padding
from minifcn.summary import summarize

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_the_mirrored_border_puts_output_pixel_i_over_image_pixel_i(depth):
    for size in (1, 5, 17, 40, 101):
        before, after = tile_padding(size, depth)
        padded = size + before + after
        assert output_size(padded, depth) >= size
        # The coordinate maps of the summary: padded pixel x lands on output pixel x + offset.
        last = summarize(UNet(2, base=1, depth=depth, init="zeros"), padded)[-1]
        assert last.coord.scale == 1 and last.coord.offset == -before


def test_weights_round_trip_and_predict_equals_the_torch_unet(torch, tmp_path, capsys):
    import torch_unet

    net = torch_unet.UNet(3, 3, base=4, depth=2).double()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():                  # fan-in scaled, so that the labels vary
        for p in net.parameters():
            noise = torch.randn(p.shape, generator=generator, dtype=p.dtype)
            p.copy_(noise / p[0].numel() ** 0.5 if p.ndim > 1 else noise * 0.1)
    ours = UNet(3, base=4, depth=2, dtype=np.float64, init="zeros")
    ours.load_state_dict({k: v.numpy() for k, v in net.state_dict().items()})
    save_weights(tmp_path / "unet.npz", ours)
    metadata = read_weights(tmp_path / "unet.npz").metadata
    assert {k: metadata[k] for k in ("arch", "n_class", "in_channels", "base", "depth")} == \
        {"arch": "unet", "n_class": 3, "in_channels": 3, "base": 4, "depth": 2}
    model = model_from_weights(tmp_path / "unet.npz")
    assert (model.base, model.depth, model.in_channels) == (4, 2, 3)
    image = np.random.default_rng(2).integers(0, 256, (37, 45, 3), dtype=np.uint8)
    x = (torch.from_numpy(image).permute(2, 0, 1).float() / 255
         - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]
    (top, bottom), (left, right) = (tile_padding(37, 2), tile_padding(45, 2))
    x = torch.nn.functional.pad(x[None].double(), (left, right, top, bottom), mode="reflect")
    with torch.no_grad():
        expected = net(x)[0, :, :37, :45].argmax(0).numpy()
    labels = predict(model, image, "imagenet")
    assert labels.shape == (37, 45) and len(np.unique(expected)) > 1
    assert np.array_equal(labels, expected)
    Image.fromarray(image).save(tmp_path / "cells.png")
    assert cli.main(["predict", str(tmp_path / "cells.png"), "--weights",
                     str(tmp_path / "unet.npz"), "--preprocess", "imagenet",
                     "--out", str(tmp_path / "out")]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / "cells_labels.png")),
                          expected)
    assert "% of the pixels" in capsys.readouterr().out


def test_a_unet_file_without_its_first_convolution_is_refused(tmp_path):
    state = UNet(2, base=2, depth=1, rng=0).state_dict()
    del state["encoder.0.0.weight"]
    write_weights(tmp_path / "bad.npz", state, arch="unet", n_class=2)
    with pytest.raises(WeightsError, match="cannot build unet with n_class=2: no 4-D "
                                           "encoder.0.0.weight"):
        model_from_weights(tmp_path / "bad.npz")
