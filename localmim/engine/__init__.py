from .amp import AmpOptimWrapper
from .checkpoint_hook import CheckpointHook
from .complete_checkpoint_hook import CompleteCheckpointHook
from .ddp import GuardedDistributedDataParallel, GuardedFullyShardedDataParallel
from .iteration_seed_hook import IterationSeedHook
from .optim_constructor import LayerDecayOptimWrapperConstructor
from .optimizers import Lars
from .runner import Runner
from .tensorboard import ReconstructionHook

__all__ = ['AmpOptimWrapper', 'CheckpointHook', 'CompleteCheckpointHook', 'GuardedDistributedDataParallel',
           'GuardedFullyShardedDataParallel', 'IterationSeedHook', 'LayerDecayOptimWrapperConstructor', 'Lars',
           'ReconstructionHook', 'Runner']
