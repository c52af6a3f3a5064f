from .iteration_seed_hook import IterationSeedHook  # noqa: F401
from .runner import Runner  # noqa: F401  (registers localmim.Runner)
