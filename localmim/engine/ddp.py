"""Data-parallel wrappers that run the model's own guarded update.

mmengine's ``MMDistributedDataParallel.train_step`` (and its FSDP twin) does forward, backward and
step itself and never calls the wrapped model's ``train_step``, so a model's own safeguards are
bypassed in every multi-process run. These wrappers keep the wrapper's forward (so gradients are
still all-reduced, or reduce-scattered, during backward) and hand the losses to the model's
``guarded_update(losses, optim_wrapper)`` when it has one (``LocalMIM``: a non-finite guard agreed
across ranks, losses logged as the mean over ranks). Models without that method train exactly as
under mmengine's wrappers.

``localmim.Runner`` uses ``GuardedDistributedDataParallel`` by default in distributed runs;
``GuardedFullyShardedDataParallel`` is for mmengine's ``FlexibleRunner`` with ``FSDPStrategy``.
"""
from mmengine.model import MMDistributedDataParallel, MMFullyShardedDataParallel

from ..registry import MODEL_WRAPPERS

__all__ = ['GuardedDistributedDataParallel', 'GuardedFullyShardedDataParallel']


class GuardedTrainStep:
    """``train_step`` ending in ``module.guarded_update`` (mixin for data-parallel wrappers)."""

    def train_step(self, data, optim_wrapper):
        guarded_update = getattr(self.module, 'guarded_update', None)
        if guarded_update is None:
            return super().train_step(data, optim_wrapper)
        with optim_wrapper.optim_context(self):
            data = self.module.data_preprocessor(data, training=True)
            losses = self._run_forward(data, mode='loss')  # through the wrapper: grads sync in backward
        return guarded_update(losses, optim_wrapper)


@MODEL_WRAPPERS.register_module()
class GuardedDistributedDataParallel(GuardedTrainStep, MMDistributedDataParallel):
    """``MMDistributedDataParallel`` whose ``train_step`` ends in ``module.guarded_update``."""


@MODEL_WRAPPERS.register_module()
class GuardedFullyShardedDataParallel(GuardedTrainStep, MMFullyShardedDataParallel):
    """``MMFullyShardedDataParallel`` whose ``train_step`` ends in ``module.guarded_update``."""
