"""LocalMIM: masked image modeling with local multi-scale reconstruction, for OpenMMLab."""
__version__ = "0.1.0"

from . import checkpoint  # noqa: E402,F401  (weights-only loaders for mmengine's CheckpointLoader)
