"""LocalMIM: masked image modeling with local multi-scale reconstruction, for OpenMMLab."""
__version__ = "0.1.0"

from .harmless_warnings import silence_harmless_warnings  # noqa: E402

silence_harmless_warnings()  # before the dependencies below emit them

from . import checkpoint  # noqa: E402,F401  (weights-only loaders for mmengine's CheckpointLoader)
