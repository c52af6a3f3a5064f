"""Simple feature pyramid for plain (single-scale) ViT backbones.

ViTDet (Li et al., 2022): all four levels from the last stride-16 map; x4 = two 2x2 stride-2
deconvolutions with LayerNorm + GELU between, x2 = one deconvolution, x1 = identity,
x0.5 = 2x2 max pool; each level then 1x1 conv + LN and 3x3 conv + LN to 256 channels, plus an
extra stride-2 level for the RPN. LocalMIM/BEiT segmentation: level i from tapped block i
(blocks 1, 3, 9, 11 for ViT-B), the deconvolutions keep D channels, no output convs
(UperNet takes the D-channel maps).
"""
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule

from ..registry import MODELS
from .layers import LayerNorm2d, rescale_layers


def build_norm2d(norm_cfg, channels):
    """Channels-first norm: ``dict(type='LN2d')`` (LayerNorm over channels) or any mmcv norm."""
    cfg = dict(norm_cfg)
    if cfg.pop('type') in ('LN2d', 'localmim.LN2d'):
        return LayerNorm2d(channels, **cfg)
    from mmcv.cnn import build_norm_layer  # mmcv only when another norm is asked for
    return build_norm_layer(dict(norm_cfg), channels)[1]


@MODELS.register_module()
class SimpleFeaturePyramid(BaseModule):
    """One or ``len(scales)`` maps [B, D, h, w] -> a tuple of maps at ``scales`` x the input size.

    Args:
        in_channels: D.
        out_channels: None: no output convs (level i has ``level_channels[i]`` channels);
            an int: per level 1x1 conv + norm + 3x3 conv + norm (no conv biases) to it.
        scales: per level, resize factor of the input map (4, 2, 1, 0.5).
        keep_channels: deconvolutions keep D channels (segmentation) instead of halving (ViTDet).
        pool: 'max' (ViTDet, BEiT) or 'avg' for the x0.5 level.
        norm_cfg: norm between the deconvolutions and after the output convs.
        num_outs: total outputs; levels beyond ``scales`` subsample the last one by 2
            (``max_pool2d`` kernel 1 stride 2, the RPN's extra level).
    """

    def __init__(self, in_channels, out_channels=None, scales=(4, 2, 1, 0.5), keep_channels=False,
                 pool='max', norm_cfg=dict(type='LN2d'), num_outs=None, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.scales = list(scales)
        self.num_outs = num_outs or len(self.scales)
        if self.num_outs < len(self.scales):
            raise ValueError(f'num_outs {num_outs} is less than the {len(self.scales)} scales')
        self.levels = nn.ModuleList()
        self.level_channels = []
        for scale in self.scales:
            layers, channels = rescale_layers(in_channels, scale, keep_channels, pool,
                                              norm=lambda c: build_norm2d(norm_cfg, c))
            if out_channels is not None:
                layers += [nn.Conv2d(channels, out_channels, 1, bias=False), build_norm2d(norm_cfg, out_channels),
                           nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
                           build_norm2d(norm_cfg, out_channels)]
                channels = out_channels
            self.levels.append(nn.Sequential(*layers))
            self.level_channels.append(channels)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):  # the output convs (MSRA fill, as ViTDet)
                nn.init.kaiming_normal_(module.weight, mode='fan_out', nonlinearity='relu')

    def forward(self, inputs):
        """inputs: tuple of 1 or len(scales) maps [B, D, h, w]. Returns a tuple of ``num_outs``
        contiguous maps (mmcv's RoIAlign reads NCHW memory directly; see ``tokens_to_map``)."""
        if len(inputs) not in (1, len(self.scales)):
            raise ValueError(f'SimpleFeaturePyramid takes 1 or {len(self.scales)} input maps, got {len(inputs)}')
        maps = list(inputs) * len(self.scales) if len(inputs) == 1 else list(inputs)
        outs = [level(x) for level, x in zip(self.levels, maps)]
        while len(outs) < self.num_outs:
            outs.append(F.max_pool2d(outs[-1], 1, stride=2))
        return tuple(out.contiguous() for out in outs)
