"""``localmim.RandomMaskGenerator``: LocalMIM's random mask, drawn in the data pipeline.

Drawing the mask in a loader worker keeps the training step free of host work: the mask travels
with the batch as host data (``data_sample.mask`` metainfo, which mmengine's data preprocessor
leaves on the host) and the model copies it to the device without a synchronisation. With
``localmim.SeededSampler`` every sample, its mask included, is built from a seed of
(seed, epoch, position), so masks repeat exactly after a resume.
"""
import numpy as np
from mmcv.transforms import BaseTransform

from localmim.registry import TRANSFORMS

__all__ = ['RandomMaskGenerator', 'num_visible_cells']


def num_visible_cells(num_cells, mask_ratio):
    """Cells left visible by a ``mask_ratio`` mask of ``num_cells`` cells (MAE's rounding)."""
    return int(num_cells * (1 - mask_ratio))


@TRANSFORMS.register_module()
class RandomMaskGenerator(BaseTransform):
    """Sets ``results['mask']``: bool (h, w) on the mask-unit grid, True = masked, with exactly
    ``num_visible_cells(h * w, mask_ratio)`` visible cells at uniformly random places.

    Args:
        input_size: int or (H, W), the model input size (the crop size).
        mask_unit: mask cell in pixels (ViT: its patch size; Swin: 32).
        mask_ratio: fraction of cells masked (the model's ``mask_ratio``).
    """

    def __init__(self, input_size=224, mask_unit=16, mask_ratio=0.75):
        H, W = (input_size, input_size) if isinstance(input_size, int) else input_size
        if H % mask_unit or W % mask_unit:
            raise ValueError(f'input size {H}x{W} is not divisible by mask_unit={mask_unit}')
        if not 0 <= mask_ratio < 1:
            raise ValueError(f'mask_ratio must be in [0, 1), got {mask_ratio}')
        self.grid = (H // mask_unit, W // mask_unit)
        self.mask_unit, self.mask_ratio = mask_unit, mask_ratio

    def transform(self, results):
        cells = self.grid[0] * self.grid[1]
        mask = np.ones(cells, dtype=bool)
        mask[np.random.permutation(cells)[:num_visible_cells(cells, self.mask_ratio)]] = False
        results['mask'] = mask.reshape(self.grid)
        return results

    def __repr__(self):
        return (f'{type(self).__name__}(grid={self.grid}, mask_unit={self.mask_unit}, '
                f'mask_ratio={self.mask_ratio})')
