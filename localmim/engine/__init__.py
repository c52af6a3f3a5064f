from .optim_constructor import LayerDecayOptimWrapperConstructor
from .optimizers import Lars

__all__ = ['LayerDecayOptimWrapperConstructor', 'Lars']
