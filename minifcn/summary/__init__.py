"""``minifcn summary``: a network's shape trace (the VGG16 FCNs, U-Net, torchvision's
segmentation ResNets), layer by layer, computed without running it.

Output shapes, parameters (learnable and frozen), forward FLOPs, im2col workspace,
receptive fields and coordinate maps, with the crop offsets they imply -- how a student
sees why conv1_1 pads by 100 and FCN-8s crops at 5, 9 and 31::

    from minifcn.summary import format_summary, summarize, summarize_arch
    rows = summarize(FCN8s(width=1/16), (96, 96))          # a model you have
    rows = summarize_arch("fcn8s", (500, 500))              # width 1, without its weights
    print(format_summary(rows))

``trace.py`` holds the arithmetic and the walk of each variant (``resnet_walk.py`` the
ResNets'), ``table.py`` the printing,
``skeleton.py`` the weightless models that make full-width summaries instant.
"""
from .skeleton import SUMMARY_ARCHS, skeleton, summarize_arch
from .table import format_summary
from .trace import LayerRow, Totals, summarize, totals

__all__ = ["LayerRow", "Totals", "summarize", "totals", "format_summary", "skeleton",
           "summarize_arch", "SUMMARY_ARCHS"]
