"""Plain Vision Transformer, used unchanged for LocalMIM pretraining and downstream tasks.

The only pretraining-specific input is an optional mask: with ``mask`` the encoder drops the
masked patches and runs on the visible ones only (MAE-style), which keeps compute proportional
to the visible tokens. Parameter names are timm's, so timm/MAE/LocalMIM weights map by name.

Downstream options (classification, UperNet, ViTDet-style Mask R-CNN), all off by default:
``out_indices`` maps, ``final_norm``, drop path, position-table interpolation to any input size,
BEiT-style relative position bias per block, layer scale, windowed attention with a few global
blocks, activation checkpointing.

cls token and windowed attention: like ViTDet, a windowed backbone has NO cls token (a window
partition needs a pure token grid). Its position table keeps the cls slot, unused, so the same
checkpoints load; a checkpoint's ``cls_token`` is then reported as an unexpected key.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.model import BaseModule
from torch.utils.checkpoint import checkpoint

from ..registry import MODELS
from .layers import Block, PatchEmbed, init_transformer_weights, sincos_pos_embed, tokens_to_map
from .pretrained_arg import ignore_inherited_pretrained

VIT_ARCHS = {
    # name: (embed_dim, depth, num_heads, patch_size)
    'tiny': (192, 12, 3, 16),
    'small': (384, 12, 6, 16),
    'base': (768, 12, 12, 16),
    'large': (1024, 24, 16, 16),
    'huge': (1280, 32, 16, 14),
}


def visible_index(mask, num_visible=None):
    """Positions of the visible patches, ascending: mask bool [B, L] (True = masked) with the
    same number masked per row -> index [B, L_visible].

    ``num_visible`` (the count, known ahead, e.g. from the mask ratio) keeps this free of host
    reads and data-dependent shapes (a compiled, sync-free step); without it the count is read
    from the mask and checked.
    """
    if num_visible is None:
        counts = (~mask).sum(1)
        if (counts != counts[0]).any():
            raise ValueError(f'every sample must mask the same number of patches, got visible counts '
                             f'{sorted(set(counts.tolist()))}')
        num_visible = int(counts[0])
    # a stable sort of the 0/1 mask lists each row's visible positions first, in ascending order
    return mask.to(torch.uint8).argsort(dim=1, stable=True)[:, :num_visible]


def resample_pos_embed(pos_embed, src_grid, dst_grid, num_prefix=1):
    """Bicubic resize of the grid part of a position table: [1, P + h*w, D] -> [1, P + H*W, D].

    The ``num_prefix`` leading (cls) slots are kept as they are. Interpolation runs in float32
    (antialiased, corners not aligned) and the result has the input's dtype.
    """
    src_grid, dst_grid = tuple(src_grid), tuple(dst_grid)
    if src_grid == dst_grid:
        return pos_embed
    prefix, grid = pos_embed[:, :num_prefix], pos_embed[:, num_prefix:]
    if grid.shape[1] != src_grid[0] * src_grid[1]:
        raise ValueError(f'position table has {grid.shape[1]} grid slots, not {src_grid[0]}x{src_grid[1]}')
    dim = grid.shape[-1]
    grid = grid.float().reshape(1, *src_grid, dim).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=dst_grid, mode='bicubic', align_corners=False, antialias=True)
    grid = grid.permute(0, 2, 3, 1).reshape(1, -1, dim).to(pos_embed.dtype)
    return torch.cat([prefix, grid], dim=1)


def window_partition(x, grid, window):
    """Tokens [B, h*w, C] -> windows [B * nW, window^2, C], zero-padding the grid to a multiple
    of ``window``; also returns the padded grid (Hp, Wp). Windows are ordered batch-major."""
    B, _, C = x.shape
    h, w = grid
    Hp, Wp = math.ceil(h / window) * window, math.ceil(w / window) * window
    x = F.pad(x.view(B, h, w, C), (0, 0, 0, Wp - w, 0, Hp - h))
    x = x.view(B, Hp // window, window, Wp // window, window, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, window * window, C), (Hp, Wp)


def window_unpartition(windows, grid, padded_grid, window):
    """Inverse of :func:`window_partition`: [B * nW, window^2, C] -> [B, h*w, C] (padding cut)."""
    (h, w), (Hp, Wp) = grid, padded_grid
    C = windows.shape[-1]
    x = windows.view(-1, Hp // window, Wp // window, window, window, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, Hp, Wp, C)[:, :h, :w].reshape(-1, h * w, C)


def window_key_mask(grid, window, device=None):
    """Bool [nW, 1, 1, window^2], True = a real (not padding) key, or None without padding."""
    h, w = grid
    if h % window == 0 and w % window == 0:
        return None
    real = torch.ones(1, h * w, 1, device=device)
    windows, _ = window_partition(real, grid, window)
    return windows[..., 0].bool()[:, None, None, :]


class WindowBlock(Block):
    """:class:`Block` whose attention runs inside non-overlapping ``window x window`` windows.

    Same parameters (and names) as :class:`Block`; norms, MLP, layer scale and drop path act on the
    whole image (drop path per image). The grid is zero-padded to a multiple of the window after
    ``norm1``; padded tokens are masked out as keys, so outputs do not depend on the padding.
    With ``rel_pos`` the relative positions (``rel_pos_type``) cover one window.
    """

    def __init__(self, dim, num_heads, window_size, rel_pos=False, **kwargs):
        super().__init__(dim, num_heads, rel_pos_grid=(window_size, window_size) if rel_pos else None, **kwargs)
        self.window_size = window_size

    def forward(self, x, grid):
        """x: [B, h*w, dim] (no cls token); grid: (h, w). Returns [B, h*w, dim]."""
        windows, padded = window_partition(self.norm1(x), grid, self.window_size)
        key_mask = window_key_mask(grid, self.window_size, x.device)
        if key_mask is not None:
            key_mask = key_mask.repeat(x.shape[0], 1, 1, 1)
        y = window_unpartition(self.attn(windows, key_mask), grid, padded, self.window_size)
        x = x + self.drop_path1(self.ls1(y))
        return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))


@MODELS.register_module()
class VisionTransformer(BaseModule):
    """ViT with a cls token and a fixed (default) or learned absolute position embedding.

    Args:
        arch: one of ``VIT_ARCHS`` or None to give ``embed_dim``/``depth``/``num_heads``/``patch_size``.
        img_size: int or (H, W): size the position table (and relative tables) are built for;
            other input sizes bicubic-interpolate the table's grid part.
        pos_embed: 'sincos' (fixed, MAE/LocalMIM pretraining) or 'learned' (trainable; use it to
            fine-tune, initialised from the checkpoint's table).
        out_indices: block indices (negative allowed) whose outputs :meth:`forward` returns.
        final_norm: apply ``norm`` to the last block's output in :meth:`forward`.
        out_type: 'featmap' (maps [B, D, H/p, W/p]) or 'cls_token' ([B, D], needs a cls token).
        drop_path_rate: stochastic depth, linear in depth from 0.
        init_values: layer-scale init (``ls1.gamma``/``ls2.gamma``), None for no layer scale.
        rel_pos_bias: learned relative positions in every block (zero-initialised if
            ``rel_pos_zero_init``, else truncated normal std 0.02), built for ``img_size`` (global
            blocks) or the window; other grids raise an error.
        rel_pos_type: 'table' (BEiT: a bias per head and 2-D offset, ``relative_position_bias_table``)
            or 'decomposed' (ViTDet: ``rel_pos_h``/``rel_pos_w``, query-dependent row and column
            terms; no cls token). See :mod:`localmim.models.rel_pos`.
        window_size: windowed attention (ViTDet) in all blocks but ``global_blocks``; no cls token.
        with_cls_token: None = True unless windowed.
        with_cp: activation checkpointing of each block while training (same values and gradients,
            block activations recomputed in the backward pass instead of kept).
        pretrained: ignored with a warning (mmseg's ``model.pretrained`` of a stock config; load
            weights with ``init_cfg``).
    """

    def __init__(self, arch='base', img_size=224, patch_size=16, in_chans=3, embed_dim=768, depth=12,
                 num_heads=12, mlp_ratio=4., qkv_bias=True, drop_path_rate=0., norm_eps=1e-6,
                 pos_embed='sincos', out_indices=(-1,), final_norm=True, out_type='featmap',
                 init_values=None, rel_pos_bias=False, rel_pos_zero_init=True, rel_pos_type='table',
                 window_size=None, global_blocks=(), with_cls_token=None, with_cp=False, init_cfg=None,
                 pretrained=None):
        super().__init__(init_cfg=init_cfg)
        ignore_inherited_pretrained(pretrained, 'localmim.VisionTransformer')
        if arch is not None:
            if arch not in VIT_ARCHS:
                raise KeyError(f'unknown ViT arch {arch!r}; choose one of {sorted(VIT_ARCHS)}')
            embed_dim, depth, num_heads, patch_size = VIT_ARCHS[arch]
        if pos_embed not in ('sincos', 'learned'):
            raise ValueError(f"pos_embed must be 'sincos' or 'learned', got {pos_embed!r}")
        if out_type not in ('featmap', 'cls_token'):
            raise ValueError(f"out_type must be 'featmap' or 'cls_token', got {out_type!r}")
        if with_cls_token is None:
            with_cls_token = window_size is None
        if window_size and with_cls_token:
            raise ValueError('windowed attention (window_size) needs with_cls_token=False (ViTDet drops it)')
        if out_type == 'cls_token' and not with_cls_token:
            raise ValueError("out_type='cls_token' needs a cls token")
        self.embed_dim, self.depth, self.patch_size, self.img_size = embed_dim, depth, patch_size, img_size
        img_hw = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        self.grid = (img_hw[0] // patch_size, img_hw[1] // patch_size)
        self.num_prefix_tokens = int(with_cls_token)
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        if with_cls_token:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        fixed = pos_embed == 'sincos'
        # the table always has a cls slot (unused without a cls token), as in MAE/timm checkpoints
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid[0] * self.grid[1], embed_dim),
                                      requires_grad=not fixed)
        if fixed:
            self.pos_embed.data.copy_(sincos_pos_embed(embed_dim, self.grid, with_cls=True)[None])
        else:
            nn.init.trunc_normal_(self.pos_embed, std=.02)

        self.window_size, self.global_blocks = window_size, sorted(i % depth for i in global_blocks)
        self.rel_pos_bias = rel_pos_bias
        drop_path = torch.linspace(0, drop_path_rate, depth).tolist()
        blocks = []
        for i in range(depth):
            common = dict(mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, drop_path=drop_path[i],
                          init_values=init_values, norm_eps=norm_eps, rel_pos_type=rel_pos_type)
            if window_size and i not in self.global_blocks:
                blocks.append(WindowBlock(embed_dim, num_heads, window_size, rel_pos=rel_pos_bias, **common))
            else:
                blocks.append(Block(embed_dim, num_heads, rel_pos_grid=self.grid if rel_pos_bias else None,
                                    rel_pos_cls=with_cls_token, **common))
        self.blocks = nn.ModuleList(blocks)
        self.out_indices = [i % depth for i in out_indices]
        self.final_norm, self.out_type, self.with_cp = final_norm, out_type, with_cp
        self.norm = nn.LayerNorm(embed_dim, eps=norm_eps) if final_norm else nn.Identity()
        self._init_weights(rel_pos_zero_init)

    def _init_weights(self, rel_pos_zero_init=True):
        self.apply(init_transformer_weights)
        w = self.patch_embed.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        if self.num_prefix_tokens:
            nn.init.normal_(self.cls_token, std=.02)
        if rel_pos_zero_init:
            for name, table in self.rel_pos_tables():
                nn.init.zeros_(table)

    def rel_pos_tables(self):
        """(name, parameter) of every relative position table (BEiT's or ViTDet's decomposed ones)."""
        names = ('relative_position_bias_table', 'rel_pos_h', 'rel_pos_w')
        return [(n, p) for n, p in self.named_parameters() if n.endswith(names)]

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Resample a checkpoint's position table of another grid (e.g. 224 weights, 512 input)."""
        key = prefix + 'pos_embed'
        if key in state_dict and state_dict[key].shape != self.pos_embed.shape:
            table = state_dict[key]
            slots = table.shape[1]
            side = math.isqrt(slots)
            num_prefix = 0 if side * side == slots else 1
            side = math.isqrt(slots - num_prefix)
            if side * side != slots - num_prefix or table.shape[-1] != self.embed_dim:
                raise ValueError(f'{key}: cannot fit a position table of shape {tuple(table.shape)} '
                                 f'to {tuple(self.pos_embed.shape)} (expected a square grid, dim {self.embed_dim})')
            if num_prefix == 0:
                table = torch.cat([table.new_zeros(1, 1, table.shape[-1]), table], dim=1)
            state_dict[key] = resample_pos_embed(table, (side, side), self.grid)
            print_log(f'{key}: resampled the position table from {side}x{side} to '
                      f'{self.grid[0]}x{self.grid[1]}', logger='current')
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ---- hooks for callers (timm style) -------------------------------------------------------
    def no_weight_decay(self):
        """Names (relative to this module) of tables and tokens excluded from weight decay."""
        names = {'pos_embed'} | {n for n, _ in self.rel_pos_tables()}
        return names | ({'cls_token'} if self.num_prefix_tokens else set())

    def feature_info(self, indices):
        """(channels, stride) of the given block outputs."""
        return [(self.embed_dim, self.patch_size) for _ in indices]

    def out_channels(self):
        """Channels of each map :meth:`forward` returns."""
        return [self.embed_dim for _ in self.out_indices]

    def get_layer_depth(self, param_name, prefix=''):
        """(layer id, number of layers) for layer-wise lr decay: embeddings 0, block i -> i+1,
        everything else (final norm, anything outside the backbone) the top id."""
        num_layers = self.depth + 2
        name = param_name[len(prefix):] if param_name.startswith(prefix) else param_name
        if name.startswith(('cls_token', 'pos_embed', 'patch_embed')):
            return 0, num_layers
        if name.startswith('blocks.'):
            return int(name.split('.')[1]) + 1, num_layers
        return num_layers - 1, num_layers

    # ---- forward ------------------------------------------------------------------------------
    def embed(self, x, mask=None, num_visible=None):
        """Images [B, C, H, W] -> tokens [B, (1 +) L(_visible), D] with positions, cls first."""
        grid = self.patch_embed.grid_size(*x.shape[-2:])
        pos_embed = resample_pos_embed(self.pos_embed, self.grid, grid)
        if mask is None:
            tokens = self.patch_embed(x) + pos_embed[:, 1:]
        else:  # only the visible patches are embedded
            index = visible_index(mask.flatten(1), num_visible)
            tokens = self.patch_embed(x, index) + pos_embed[0, 1:][index]
        if not self.num_prefix_tokens:
            return tokens
        cls = (self.cls_token + pos_embed[:, :1]).expand(tokens.shape[0], -1, -1)
        return torch.cat([cls, tokens], dim=1)

    def run_block(self, index, x, grid):
        """Block ``index`` on tokens [B, N, D] of an (h, w) grid (checkpointed if ``with_cp``)."""
        block = self.blocks[index]
        args = (x, grid) if isinstance(block, WindowBlock) else (x,)
        if self.with_cp and self.training and torch.is_grad_enabled():
            return checkpoint(block, *args, use_reentrant=False)
        return block(*args)

    def check_grid(self, grid, mask):
        if mask is not None and (self.window_size or self.rel_pos_bias):
            raise ValueError('masked input (pretraining) is not supported with windowed attention '
                             'or relative position bias')
        if self.rel_pos_bias and tuple(grid) != self.grid and (
                not self.window_size or self.global_blocks):
            raise ValueError(f'relative position tables are built for a {self.grid[0]}x{self.grid[1]} '
                             f'grid (img_size={self.img_size}); got a {grid[0]}x{grid[1]} grid')

    def forward_intermediates(self, x, indices, mask=None, detach_between=False, num_visible=None):
        """Raw outputs of the blocks in ``indices`` (ascending), each [B, (1 +) L(_visible), D].

        mask: optional bool [B, h, w] or [B, L], True = masked patch (dropped before the blocks).
        num_visible: visible patches per sample when known ahead (no host read; see :func:`visible_index`).
        detach_between: cut the gradient after each returned block (gradient-isolated segments).
        Blocks after the last index are not run.
        """
        indices = [i % self.depth for i in indices]
        grid = self.patch_embed.grid_size(*x.shape[-2:])
        self.check_grid(grid, mask)
        x = self.embed(x, mask, num_visible)
        outputs = []
        for i in range(max(indices) + 1):
            x = self.run_block(i, x, grid)
            if i in indices:
                outputs.append(x)
                if detach_between:
                    x = x.detach()
        return outputs

    def forward(self, x):
        """Images [B, C, H, W] -> tuple, one per ``out_indices``, of maps [B, D, H/p, W/p]
        (``out_type='featmap'``) or cls tokens [B, D] (``'cls_token'``)."""
        h, w = self.patch_embed.grid_size(*x.shape[-2:])
        outs = self.forward_intermediates(x, self.out_indices)
        by_index = dict(zip(sorted(set(self.out_indices)), outs))
        results = []
        for i in self.out_indices:
            out = by_index[i]
            if i == self.depth - 1:
                out = self.norm(out)
            if self.out_type == 'cls_token':
                results.append(out[:, 0])
            else:
                patches = out[:, self.num_prefix_tokens:]
                results.append(tokens_to_map(patches, h, w))
        return tuple(results)
