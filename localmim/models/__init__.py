from .decoders import LocalDecoder
from .localmim import LocalMIM
from .swin import SwinTransformer
from .targets import HOGTarget, PixelTarget
from .vit import VisionTransformer

__all__ = ['LocalDecoder', 'LocalMIM', 'HOGTarget', 'PixelTarget', 'SwinTransformer', 'VisionTransformer']
