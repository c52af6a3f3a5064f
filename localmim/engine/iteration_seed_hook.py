"""Reseed the random number generators from (seed, rank, iteration) before every iteration."""
import random

import numpy as np
import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook

from ..registry import HOOKS

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

    Data loading workers keep their own generators (seeded by mmengine per worker, and replayed
    identically when the loop skips the already trained batches on resume); random transforms
    run in the main process (``num_workers=0``) are not covered.

    Use: ``custom_hooks = [dict(type='localmim.IterationSeedHook')]``.
    """
    priority = 'VERY_HIGH'

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        seed = iteration_seed(runner.seed, get_rank(), runner.iter)
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)


def iteration_seed(seed, rank, iteration):
    """A well-mixed 32-bit seed for ``(seed, rank, iteration)``."""
    return int(np.random.SeedSequence([seed, rank, iteration]).generate_state(1)[0])
