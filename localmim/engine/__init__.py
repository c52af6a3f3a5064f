from .amp import AmpOptimWrapper
from .checkpoint_hook import CheckpointHook
from .ddp import GuardedDistributedDataParallel, GuardedFullyShardedDataParallel
from .iteration_seed_hook import IterationSeedHook
from .optim_constructor import LayerDecayOptimWrapperConstructor
from .optimizers import Lars
from .runner import Runner

__all__ = ['AmpOptimWrapper', 'CheckpointHook', 'GuardedDistributedDataParallel',
           'GuardedFullyShardedDataParallel', 'IterationSeedHook',
           'LayerDecayOptimWrapperConstructor', 'Lars', 'Runner']
