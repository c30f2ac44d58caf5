"""The plain-torch U-Net (minifcn/bench/torch_unet.py), for the tests. Needs torch."""
from minifcn.bench.torch_unet import UNet, center_crop, double_conv, scaled

__all__ = ["UNet", "center_crop", "double_conv", "scaled"]
