from .checkpoint_hook import CheckpointHook
from .iteration_seed_hook import IterationSeedHook
from .optim_constructor import LayerDecayOptimWrapperConstructor
from .optimizers import Lars
from .runner import Runner

__all__ = ['CheckpointHook', 'IterationSeedHook', 'LayerDecayOptimWrapperConstructor', 'Lars',
           'Runner']
