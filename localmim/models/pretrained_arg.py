"""The ``pretrained`` argument that stock mmseg configs hand to any backbone.

mmseg's ``EncoderDecoder`` passes its ``model.pretrained`` (e.g. ``'open-mmlab://resnet50_v1c'``
in every UperNet config) to the backbone as ``backbone.pretrained``. A config that inherits such
a model and swaps in our backbone would fail with "unexpected keyword argument 'pretrained'";
our backbones accept the argument, ignore it and say how to load weights instead.
"""
import warnings

__all__ = ['ignore_inherited_pretrained']


def ignore_inherited_pretrained(pretrained, backbone):
    """Warn that ``pretrained`` is ignored, pointing to ``init_cfg``."""
    if pretrained is None:
        return
    warnings.warn(f'{backbone} ignores pretrained={pretrained!r} (inherited from the base config\'s '
                  'model.pretrained, meant for the backbone it replaced). Load weights with '
                  "init_cfg=dict(type='Pretrained', checkpoint=..., prefix='backbone.') on the "
                  'backbone, and set model.pretrained=None to silence this.', stacklevel=3)
