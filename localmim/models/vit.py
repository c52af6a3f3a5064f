"""Plain Vision Transformer, used unchanged for LocalMIM pretraining and downstream tasks.

The only pretraining-specific input is an optional mask: with ``mask`` the encoder drops the
masked patches and runs on the visible ones only (MAE-style), which keeps compute proportional
to the visible tokens. Parameter names are timm's, so timm/MAE/LocalMIM weights map by name.
"""
import torch
import torch.nn as nn
from mmengine.model import BaseModule

from ..registry import MODELS
from .layers import Block, PatchEmbed, init_transformer_weights, sincos_pos_embed

VIT_ARCHS = {
    # name: (embed_dim, depth, num_heads, patch_size)
    'tiny': (192, 12, 3, 16),
    'small': (384, 12, 6, 16),
    'base': (768, 12, 12, 16),
    'large': (1024, 24, 16, 16),
    'huge': (1280, 32, 16, 14),
}


def visible_tokens(tokens, mask):
    """Keep the visible tokens in raster order: [B, L, D], mask bool [B, L] (True = masked)
    with the same number masked per row -> [B, L_visible, D]."""
    num_visible = (~mask).sum(1)
    if (num_visible != num_visible[0]).any():
        raise ValueError(f'every sample must mask the same number of patches, got visible counts '
                         f'{sorted(set(num_visible.tolist()))}')
    index = torch.nonzero(~mask)[:, 1].view(mask.shape[0], -1)  # row-major: ascending per sample
    return tokens.gather(1, index[..., None].expand(-1, -1, tokens.shape[-1]))


@MODELS.register_module()
class VisionTransformer(BaseModule):
    """ViT with a cls token and a fixed (default) or learned absolute position embedding.

    Args:
        arch: one of ``VIT_ARCHS`` or None to give ``embed_dim``/``depth``/``num_heads``/``patch_size``.
        img_size: pretraining/reference input size; other sizes interpolate the position table.
        pos_embed: 'sincos' (fixed, MAE/LocalMIM) or 'learned'.
        out_indices: block indices (negative allowed) whose outputs :meth:`forward` returns as maps.
        final_norm: apply ``norm`` to the last block's output in :meth:`forward`.
    """

    def __init__(self, arch='base', img_size=224, patch_size=16, in_chans=3, embed_dim=768, depth=12,
                 num_heads=12, mlp_ratio=4., qkv_bias=True, drop_path_rate=0., norm_eps=1e-6,
                 pos_embed='sincos', out_indices=(-1,), final_norm=True, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if arch is not None:
            if arch not in VIT_ARCHS:
                raise KeyError(f'unknown ViT arch {arch!r}; choose one of {sorted(VIT_ARCHS)}')
            embed_dim, depth, num_heads, patch_size = VIT_ARCHS[arch]
        self.embed_dim, self.depth, self.patch_size, self.img_size = embed_dim, depth, patch_size, img_size
        self.num_prefix_tokens = 1  # the cls token
        self.grid = (img_size // patch_size, img_size // patch_size)
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        fixed = pos_embed == 'sincos'
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid[0] * self.grid[1], embed_dim),
                                      requires_grad=not fixed)
        if fixed:
            self.pos_embed.data.copy_(sincos_pos_embed(embed_dim, self.grid, with_cls=True)[None])
        else:
            nn.init.trunc_normal_(self.pos_embed, std=.02)
        drop_path = torch.linspace(0, drop_path_rate, depth).tolist()
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias, drop_path=drop_path[i], norm_eps=norm_eps)
            for i in range(depth))
        self.out_indices = [i % depth for i in out_indices]
        self.final_norm = final_norm
        self.norm = nn.LayerNorm(embed_dim, eps=norm_eps) if final_norm else nn.Identity()
        self._init_weights()

    def _init_weights(self):
        self.apply(init_transformer_weights)
        w = self.patch_embed.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.normal_(self.cls_token, std=.02)

    # ---- hooks for callers (timm style) -------------------------------------------------------
    def no_weight_decay(self):
        return {'cls_token', 'pos_embed'}

    def feature_info(self, indices):
        """(channels, stride) of the given block outputs."""
        return [(self.embed_dim, self.patch_size) for _ in indices]

    def get_layer_depth(self, param_name, prefix=''):
        """(layer id, number of layers) for layer-wise lr decay: embeddings 0, block i -> i+1."""
        num_layers = self.depth + 2
        name = param_name[len(prefix):] if param_name.startswith(prefix) else param_name
        if name.startswith(('cls_token', 'pos_embed', 'patch_embed')):
            return 0, num_layers
        if name.startswith('blocks.'):
            return int(name.split('.')[1]) + 1, num_layers
        return num_layers - 1, num_layers

    # ---- forward ------------------------------------------------------------------------------
    def embed(self, x, mask=None):
        """Images [B, C, H, W] -> tokens [B, 1 + L(_visible), D] with positions and cls first."""
        tokens = self.patch_embed(x) + self.pos_embed[:, 1:]
        if mask is not None:
            tokens = visible_tokens(tokens, mask.flatten(1))
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(tokens.shape[0], -1, -1)
        return torch.cat([cls, tokens], dim=1)

    def forward_intermediates(self, x, indices, mask=None, detach_between=False):
        """Raw outputs of the blocks in ``indices`` (ascending), each [B, 1 + L(_visible), D].

        mask: optional bool [B, h, w] or [B, L], True = masked patch (dropped before the blocks).
        detach_between: cut the gradient after each returned block (gradient-isolated segments).
        Blocks after the last index are not run.
        """
        indices = [i % self.depth for i in indices]
        x = self.embed(x, mask)
        outputs = []
        for i, block in enumerate(self.blocks[:max(indices) + 1]):
            x = block(x)
            if i in indices:
                outputs.append(x)
                if detach_between:
                    x = x.detach()
        return outputs

    def forward(self, x):
        """Images [B, C, H, W] -> tuple of maps [B, D, H/p, W/p], one per ``out_indices``."""
        h, w = self.patch_embed.grid_size(*x.shape[-2:])
        outs = self.forward_intermediates(x, self.out_indices)
        maps = []
        for i, out in zip(self.out_indices, outs):
            if i == self.depth - 1:
                out = self.norm(out)
            maps.append(out[:, 1:].transpose(1, 2).reshape(out.shape[0], -1, h, w))
        return tuple(maps)
