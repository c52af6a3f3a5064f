from .classifier import ImageClassifier
from .decoders import LocalDecoder
from .localmim import LocalMIM
from .necks import SimpleFeaturePyramid
from .norms import LayerNorm2d
from .swin import SwinTransformer
from .targets import HOGTarget, PixelTarget
from .vit import VisionTransformer

__all__ = ['ImageClassifier', 'LocalDecoder', 'LayerNorm2d', 'LocalMIM', 'HOGTarget', 'PixelTarget',
           'SimpleFeaturePyramid', 'SwinTransformer', 'VisionTransformer']
