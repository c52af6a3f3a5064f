"""``localmim.SeededSampler``: data augmentation that repeats exactly after a resume.

A loader worker's random generators are seeded once, when the worker starts. With
``persistent_workers=True`` they run on from epoch to epoch, so a run resumed from an epoch
checkpoint (new workers, seeded as at the start) augments its images differently from the
uninterrupted run, and its losses differ from the first resumed iteration on.

This sampler orders samples exactly as mmengine's ``DefaultSampler`` but yields ``(index, seed)``
pairs. Datasets built on :class:`SeededItems` seed ``random``, numpy and torch with ``seed``
before building the sample. The seed is a function of (sampler seed, epoch, position of the
sample in the epoch's global order) only, so sample ``i`` of epoch ``e`` is augmented the same
way by any worker, with persistent workers or not, with any number of workers or ranks, in a
resumed run as in the uninterrupted one.
"""
import numpy as np
from mmengine.dataset import DefaultSampler

from ..registry import DATA_SAMPLERS
from ..seeding import mix_seed, seed_all

__all__ = ['SeededItems', 'SeededSampler']


class SeededItems:
    """Dataset mixin: ``dataset[(index, seed)]`` seeds the generators, then builds ``dataset[index]``."""

    def __getitem__(self, idx):
        if isinstance(idx, tuple):
            idx, seed = idx
            seed_all(seed)
        return super().__getitem__(idx)


@DATA_SAMPLERS.register_module()
class SeededSampler(DefaultSampler):
    """``DefaultSampler`` yielding ``(index, augmentation seed)`` (see the module doc).

    Args: as ``DefaultSampler`` (dataset, shuffle, seed, round_up). The dataset must derive from
    :class:`SeededItems` (every localmim dataset does).
    """

    def __init__(self, dataset, shuffle=True, seed=None, round_up=True):
        if not isinstance(dataset, SeededItems):
            raise TypeError(f'localmim.SeededSampler needs a dataset that takes (index, seed) pairs '
                            f'(a localmim dataset); {type(dataset).__name__} does not: use '
                            "sampler=dict(type='DefaultSampler') for it")
        super().__init__(dataset, shuffle=shuffle, seed=seed, round_up=round_up)

    def __iter__(self):
        indices = list(super().__iter__())
        positions = np.arange(self.rank, self.total_size, self.world_size)[:len(indices)]
        seeds = mix_seed(self.seed, self.epoch, positions).tolist()
        return iter(list(zip(indices, seeds)))
