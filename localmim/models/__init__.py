from .classifier import ImageClassifier
from .decoders import LocalDecoder
from .localmim import LocalMIM
from .necks import SimpleFeaturePyramid
from .swin import SwinTransformer
from .targets import HOGTarget, PixelTarget
from .vit import VisionTransformer

__all__ = ['ImageClassifier', 'LocalDecoder', 'LocalMIM', 'HOGTarget', 'PixelTarget', 'SimpleFeaturePyramid',
           'SwinTransformer', 'VisionTransformer']
