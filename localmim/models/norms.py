"""Norm layers registered for configs: ``norm_cfg=dict(type='localmim.LN2d')`` builds a
channels-first LayerNorm (:class:`~localmim.models.layers.LayerNorm2d`, over C of [B, C, H, W])
through mmcv's ``build_norm_layer``, so mmdet/mmseg heads made of ``ConvModule`` (e.g.
``Shared4Conv1FCBBoxHead``, ``FCNMaskHead``) can use LayerNorm as ViTDet does. mmcv's own ``LN``
is ``nn.LayerNorm`` over the LAST axis and is wrong on channels-first maps.
"""
from ..registry import MODELS
from .layers import LayerNorm2d

__all__ = ['LayerNorm2d']

MODELS.register_module('LN2d', module=LayerNorm2d)
