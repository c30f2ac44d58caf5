"""The plain-torch FCN-ResNet50 and DeepLabV3-ResNet50 (minifcn/bench/torch_segmentation.py,
torchvision's layout and keys), and a way to fill one with random weights and statistics
for the tests. Needs torch."""
from minifcn.bench.torch_segmentation import (ASPP, Backbone, Bottleneck, ImagePooling,
                                              Segmenter, deeplab_head, fcn_head, scaled)

__all__ = ["ASPP", "Backbone", "Bottleneck", "ImagePooling", "Segmenter", "deeplab_head",
           "fcn_head", "scaled", "randomize_"]


def randomize_(torch, net, seed=0):
    """Random weights, BatchNorm affine parameters and running statistics (so that eval mode
    is not the identity), num_batches_tracked 7; in place, returns net."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if name.endswith("num_batches_tracked"):
                t.fill_(7)
                continue
            noise = torch.randn(t.shape, generator=generator, dtype=t.dtype)
            if name.endswith("running_var"):
                t.copy_(noise.abs() + 0.5)
            elif t.ndim == 1:                  # BatchNorm weight/bias, running mean, biases
                t.copy_(noise * 0.5 + (1.0 if name.endswith("weight") else 0.0))
            else:                              # convolutions, scaled by their fan-in
                t.copy_(noise / max(1, t[0].numel()) ** 0.5)
    return net
