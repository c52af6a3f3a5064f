"""Datasets and transforms (registered in the ``localmim`` scope)."""
from .dali import *  # noqa: F401,F403
from .fashion_det_seg import *  # noqa: F401,F403
from .fashion_mnist import *  # noqa: F401,F403
from .fmnist_canvas import *  # noqa: F401,F403
from .imagenet import *  # noqa: F401,F403
from .masking import *  # noqa: F401,F403
from .samplers import *  # noqa: F401,F403
from .transforms import *  # noqa: F401,F403
