"""Dataset types for the Fashion-MNIST canvas sets of :mod:`localmim.datasets.fmnist_canvas`.

``localmim.FashionCocoDataset``: mmdet's ``CocoDataset`` with the 10 Fashion-MNIST classes
(category ids 1..10 -> labels 0..9). ``localmim.FashionADEDataset``: mmseg's ``BaseSegDataset``
with the 11 classes (``background`` + 10 items), ``.jpg`` images, ``.png`` maps and
``reduce_zero_label=True`` (see the label convention in ``fmnist_canvas``).
"""
from mmdet.datasets import CocoDataset
from mmseg.datasets import BaseSegDataset

from localmim.registry import DATASETS

from .fmnist_canvas import FASHION_ADE_METAINFO, FMNIST_COCO_METAINFO

__all__ = ['FashionCocoDataset', 'FashionADEDataset']


@DATASETS.register_module()
class FashionCocoDataset(CocoDataset):
    """COCO-format instances of the Fashion-MNIST canvases (10 classes)."""
    METAINFO = FMNIST_COCO_METAINFO


@DATASETS.register_module()
class FashionADEDataset(BaseSegDataset):
    """ADE20K-format semantic maps of the Fashion-MNIST canvases (11 classes, 0 = background)."""
    METAINFO = FASHION_ADE_METAINFO

    def __init__(self, img_suffix='.jpg', seg_map_suffix='.png', reduce_zero_label=True, **kwargs):
        super().__init__(img_suffix=img_suffix, seg_map_suffix=seg_map_suffix,
                         reduce_zero_label=reduce_zero_label, **kwargs)
