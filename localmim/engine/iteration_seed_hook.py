"""Reseed the random number generators from (seed, rank, iteration) before every iteration."""
from mmengine.dist import get_rank
from mmengine.hooks import Hook

from ..registry import HOOKS
from ..seeding import mix_seed, seed_all

__all__ = ['IterationSeedHook']


@HOOKS.register_module()
class IterationSeedHook(Hook):
    """Make a resumed run draw the same random numbers as an uninterrupted one.

    mmengine does not save random number generator states in checkpoints: on resume it
    re-seeds with the run's initial seed, so random masks (or dropout) after a resume differ from
    those of an uninterrupted run. This hook seeds Python's ``random``, numpy's global generator
    and torch (CPU and CUDA) before every training iteration with a value derived from
    ``(runner.seed, rank, iteration)``, so iteration ``i`` draws the same numbers however the
    run got there. Ranks get different streams.

    This covers what runs in the main process during a step (masks, drop path, mixup in the
    data preprocessor). Data augmentation runs in loader workers, whose generators are seeded
    once when they start: with ``localmim.SeededSampler`` (the shipped configs' train sampler)
    every sample is augmented from a seed of (sampler seed, epoch, position in the epoch), so a
    run resumed from an epoch checkpoint, with persistent workers or not, loads the same batches.
    Without it, only iteration-based loops with ``InfiniteSampler`` repeat the stream (mmengine
    replays the already trained batches on resume).

    Use: ``custom_hooks = [dict(type='localmim.IterationSeedHook')]``.
    """
    priority = 'VERY_HIGH'

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        seed_all(mix_seed(runner.seed, get_rank(), runner.iter))
