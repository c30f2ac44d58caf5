"""Data sets and transforms for segmentation: generated shapes and the PASCAL VOC layout."""
from .shapes import CLASS_NAMES as SHAPES_CLASS_NAMES
from .shapes import PALETTE as SHAPES_PALETTE
from .shapes import ShapesDataset
from .shapes import write_voc as write_shapes_voc
from .transforms import (IMAGENET_MEAN, IMAGENET_STD, MEAN_RGB_UINT8, REFERENCE_MEAN_BGR,
                         collate, denormalize, normalize, random_flip, random_scale_crop,
                         reference_deprocess, reference_preprocess)
from .voc import (IGNORE_INDEX, VOC_CLASSES, VOC_PALETTE, DatasetError, VOCSegmentation,
                  read_image, read_label, voc_palette)
