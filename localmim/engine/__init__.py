from .iteration_seed_hook import IterationSeedHook
from .optim_constructor import LayerDecayOptimWrapperConstructor
from .optimizers import Lars
from .runner import Runner

__all__ = ['IterationSeedHook', 'LayerDecayOptimWrapperConstructor', 'Lars', 'Runner']
