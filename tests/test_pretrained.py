"""FCNs built from VGG16 weights: the trunk and fc6/fc7 copied, the rest as the reference."""
import numpy as np
import pytest

from minifcn.convert import VGG16_KEYS
from minifcn.io import write_weights
from minifcn.models import FCN8s, fcn8s_from_vgg16, fcn16s_from_vgg16, fcn32s_from_vgg16
from minifcn.ops import bilinear_upsampling_weight


def vgg_arrays(width=1 / 32, seed=0):
    """minifcn-named VGG16 weights at a reduced width, fc6/fc7 as 2-D fully connected layers."""
    shapes = dict(FCN8s(n_class=3, width=width, init="zeros").named_parameters())
    rng = np.random.default_rng(seed)
    arrays = {k: rng.standard_normal(shapes[k].shape).astype(np.float32) for k in VGG16_KEYS}
    arrays["fc6.weight"] = arrays["fc6.weight"].reshape(arrays["fc6.weight"].shape[0], -1)
    arrays["fc7.weight"] = arrays["fc7.weight"].reshape(arrays["fc7.weight"].shape[0], -1)
    return arrays


@pytest.mark.parametrize("build", [fcn8s_from_vgg16, fcn16s_from_vgg16, fcn32s_from_vgg16])
def test_trunk_and_head_come_from_vgg_the_rest_from_the_reference(tmp_path, build):
    arrays = vgg_arrays()
    path = tmp_path / "vgg16.npz"
    write_weights(path, arrays, arch="vgg16")
    model = build(path, n_class=5)
    params = dict(model.named_parameters())
    np.testing.assert_array_equal(params["conv3_2.weight"].data, arrays["conv3_2.weight"])
    np.testing.assert_array_equal(params["fc6.weight"].data.reshape(arrays["fc6.weight"].shape),
                                  arrays["fc6.weight"])
    assert params["fc6.weight"].shape[2:] == (7, 7) and model.width == 1 / 32
    assert not params["score_fr.weight"].data.any() and not params["score_fr.bias"].data.any()
    upscores = [n for n in params if n.startswith("upscore")]
    assert upscores and all(not params[n].requires_grad for n in upscores)
    for name in upscores:
        k = params[name].shape[-1]
        np.testing.assert_array_equal(params[name].data, bilinear_upsampling_weight(5, k))
    y = model(np.zeros((1, 3, 9, 11), np.float32))
    assert y.shape == (1, 5, 9, 11)


def test_a_dict_in_torchvision_names_works_too():
    arrays = vgg_arrays(seed=1)
    convs = [k for k in VGG16_KEYS if k.startswith("conv")]
    indices = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    torchvision = {}
    for n, i in enumerate(indices):
        torchvision[f"features.{i}.weight"] = arrays[convs[2 * n]]
        torchvision[f"features.{i}.bias"] = arrays[convs[2 * n + 1]]
    for fc, index in (("fc6", 0), ("fc7", 3)):
        torchvision[f"classifier.{index}.weight"] = arrays[f"{fc}.weight"]
        torchvision[f"classifier.{index}.bias"] = arrays[f"{fc}.bias"]
    model = fcn8s_from_vgg16(torchvision, n_class=3)
    np.testing.assert_array_equal(model.conv5_3.bias.data, arrays["conv5_3.bias"])
    np.testing.assert_array_equal(model.fc7.weight.data[:, :, 0, 0], arrays["fc7.weight"])
