"""The PyTorch FCNs the tests compare minifcn's with: :mod:`minifcn.bench.torch_fcn`, which
``minifcn bench fcn`` times too, re-exported under the name the tests import (``import
torch_fcn``). Plain module (no pytest); needs torch."""
from minifcn.bench.torch_fcn import (ARCHITECTURES, FCN8s, FCN8sAtOnce, FCN16s, FCN32s,
                                     VGG16_BLOCKS, crop, load_numpy_state_dict, scaled, twin)

__all__ = ["ARCHITECTURES", "FCN8s", "FCN8sAtOnce", "FCN16s", "FCN32s", "VGG16_BLOCKS", "crop",
           "load_numpy_state_dict", "scaled", "twin"]
