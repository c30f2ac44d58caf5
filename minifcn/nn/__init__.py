"""Stateful layers: ``Parameter``, ``Module``, ``Sequential`` and one class per op."""
from .activation import Dropout, ReLU
from .concat import Concat
from .container import ModuleList, Sequential
from .conv import Conv2d, ConvTranspose2d
from .crop import Crop
from .loss import SoftmaxCrossEntropyLoss
from .module import Buffer, Module, Parameter
from .norm import BatchNorm2d
from .pool import AdaptiveAvgPool2d, MaxPool2d
from .upsample import UpsamplingBilinear2d

__all__ = ["ReLU", "Dropout", "Crop",
           "Parameter", "Module", "Sequential", "Conv2d", "ConvTranspose2d",
           "SoftmaxCrossEntropyLoss",
           "UpsamplingBilinear2d",
           "MaxPool2d", "AdaptiveAvgPool2d", "BatchNorm2d", "Concat", "Buffer", "ModuleList"]
