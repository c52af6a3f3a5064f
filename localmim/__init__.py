"""LocalMIM: masked image modeling with local multi-scale reconstruction, for OpenMMLab."""
__version__ = "0.1.0"
