"""Building blocks shared by the ViT and Swin encoders and the LocalMIM decoders.

Parameter names follow timm (``norm1``, ``attn.qkv``, ``attn.proj``, ``mlp.fc1``, ``ls1.gamma``,
``attn.relative_position_bias_table``), so timm, MAE and LocalMIM-release weights map by name.
Attention always runs through ``F.scaled_dot_product_attention``.
"""
import math
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath

from .rel_pos import decomposed_rel_pos_qk, relative_position_bias, relative_position_index  # noqa: F401

LayerNorm = partial(nn.LayerNorm, eps=1e-6)


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a channels-first map [B, C, H, W]."""

    def __init__(self, num_channels, eps=1e-6):
        super().__init__(num_channels, eps=eps)

    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class Mlp(nn.Module):
    """fc1 -> GELU -> fc2 on [..., dim]."""

    def __init__(self, dim, hidden_dim, drop=0.):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x):
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class LayerScale(nn.Module):
    """Per-channel learnable scale ``gamma`` (CaiT / BEiT layer scale)."""

    def __init__(self, dim, init_value):
        super().__init__()
        self.gamma = nn.Parameter(init_value * torch.ones(dim))

    def forward(self, x):
        return x * self.gamma


class Attention(nn.Module):
    """Multi-head self-attention over [B, N, dim] or [B, G, N, dim] with fused SDPA.

    With a group axis G (e.g. Swin's packed windows) each group attends within itself; groups
    are folded into the head axis, so SDPA sees one 4-D problem and a 4-D mask (its fast path).

    Args:
        rel_pos_grid: (h, w) of the token grid for learned relative positions; None for none.
        rel_pos_cls: the tokens start with a cls token (BEiT's 3 extra table rows).
        rel_pos_type: 'table' (BEiT/Swin: ``relative_position_bias_table`` [(2h-1)(2w-1), heads],
            added to the logits as SDPA's ``attn_mask``) or 'decomposed' (ViTDet: ``rel_pos_h``
            [2h-1, head_dim] and ``rel_pos_w`` [2w-1, head_dim], folded into q and k; no cls token).
    """

    def __init__(self, dim, num_heads, qkv_bias=True, attn_drop=0., proj_drop=0.,
                 rel_pos_grid=None, rel_pos_cls=False, rel_pos_type='table'):
        super().__init__()
        assert dim % num_heads == 0, f'dim {dim} is not divisible by num_heads {num_heads}'
        if rel_pos_type not in ('table', 'decomposed'):
            raise ValueError(f"rel_pos_type must be 'table' or 'decomposed', got {rel_pos_type!r}")
        if rel_pos_type == 'decomposed' and rel_pos_cls:
            raise ValueError("rel_pos_type='decomposed' (ViTDet) needs tokens without a cls token")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.rel_pos_grid, self.rel_pos_cls, self.rel_pos_type = rel_pos_grid, rel_pos_cls, rel_pos_type
        if rel_pos_grid is None:
            return
        h, w = rel_pos_grid
        if rel_pos_type == 'table':
            rows = (2 * h - 1) * (2 * w - 1) + (3 if rel_pos_cls else 0)
            self.relative_position_bias_table = nn.Parameter(torch.zeros(rows, num_heads))
            nn.init.trunc_normal_(self.relative_position_bias_table, std=.02)
        else:
            head_dim = dim // num_heads
            self.rel_pos_h = nn.Parameter(torch.zeros(2 * h - 1, head_dim))
            self.rel_pos_w = nn.Parameter(torch.zeros(2 * w - 1, head_dim))
            nn.init.trunc_normal_(self.rel_pos_h, std=.02)
            nn.init.trunc_normal_(self.rel_pos_w, std=.02)

    def relative_position_bias(self, index=None, dtype=None):
        """The table's bias [..., heads, N, N] (in ``dtype``), looked up at ``index`` [..., N, M]
        (Swin's packed windows) or, by default, over the whole ``rel_pos_grid`` (without an index)."""
        table = self.relative_position_bias_table.to(dtype)
        if index is None:
            return relative_position_bias(table, self.rel_pos_grid, self.rel_pos_cls)
        # index_select: its backward is an index_add, several times faster on GPU than indexing's.
        # Heads first, so the last stride is 1 as fused SDPA kernels need (else: the math kernel).
        bias = table.t().index_select(1, index.reshape(-1)).view(-1, *index.shape)  # [heads, (G,) N, M]
        return bias.movedim(0, -3)

    def forward(self, x, attn_bias=None, rel_pos_index=None):
        """x: [B, N, dim] or [B, G, N, dim]. attn_bias: additive float or boolean (True = attend)
        mask broadcastable to [B, heads, N, N] (grouped: to [G, heads, N, N], shared by the batch),
        added to the table's bias when both exist. rel_pos_index: table index [N, N] or [G, N, N]
        (default: the whole ``rel_pos_grid``). Returns x's shape."""
        *lead, N, C = x.shape
        groups = len(lead) == 2
        qkv = self.qkv(x).view(*lead, N, 3, self.num_heads, C // self.num_heads)
        q, k, v = qkv.movedim(-3, 0).transpose(-3, -2).flatten(2, -3)  # each [B, (G*)heads, N, d]
        scale = None  # SDPA's default, 1 / sqrt(d)
        table = self.rel_pos_grid is not None and self.rel_pos_type == 'table'
        if attn_bias is not None and attn_bias.dtype == torch.bool and (table or groups):
            attn_bias = torch.zeros_like(attn_bias, dtype=q.dtype).masked_fill(~attn_bias, -math.inf)
        if table:
            bias = self.relative_position_bias(rel_pos_index, q.dtype)
            attn_bias = bias if attn_bias is None else bias + attn_bias
        elif self.rel_pos_grid is not None:
            q, k = decomposed_rel_pos_qk(q, k, self.rel_pos_h, self.rel_pos_w, self.rel_pos_grid,
                                         scale=q.shape[-1] ** -0.5)
            scale = 1.0
        if groups and attn_bias is not None:
            attn_bias = attn_bias.expand(lead[1], self.num_heads, N, N).flatten(0, 1)
        if attn_bias is not None and attn_bias.dim() < 4:
            attn_bias = attn_bias.view((1,) * (4 - attn_bias.dim()) + attn_bias.shape)  # SDPA's fast path
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias, scale=scale,
                                           dropout_p=self.attn_drop if self.training else 0.)
        x = x.view(*lead, self.num_heads, N, C // self.num_heads).transpose(-3, -2)
        return self.proj_drop(self.proj(x.reshape(*lead, N, C)))


    def forward_at(self, x, index):
        """Attention outputs at the rows ``index`` [B, n] of x [B, N, dim] only, keys and values
        from every row -> [B, n, dim] (equal to ``forward(x)`` at those rows; no relative positions
        or masks, as the LocalMIM decoders need)."""
        B, N, C = x.shape
        heads, d = self.num_heads, C // self.num_heads
        w_q, w_kv = self.qkv.weight.split([C, 2 * C])
        b_q, b_kv = (None, None) if self.qkv.bias is None else self.qkv.bias.split([C, 2 * C])
        rows = x.gather(1, index[..., None].expand(-1, -1, C))
        q = F.linear(rows, w_q, b_q).view(B, -1, heads, d).transpose(1, 2)
        k, v = F.linear(x, w_kv, b_kv).view(B, N, 2, heads, d).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.)
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(B, -1, C)))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x)), on [B, N, dim].

    ``init_values`` enables layer scale (``ls1.gamma``/``ls2.gamma``); ``rel_pos_grid`` relative
    positions in the attention (see :class:`Attention`).
    """

    def __init__(self, dim, num_heads, mlp_ratio=4., qkv_bias=True, drop_path=0., init_values=None,
                 norm_eps=1e-6, rel_pos_grid=None, rel_pos_cls=False, rel_pos_type='table'):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias, rel_pos_grid=rel_pos_grid, rel_pos_cls=rel_pos_cls,
                              rel_pos_type=rel_pos_type)
        self.ls1 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x, attn_bias=None, rel_pos_index=None):
        """x: [B, N, dim] or [B, G, N, dim]; see :meth:`Attention.forward` for the rest."""
        x = x + self.drop_path1(self.ls1(self.attn(self.norm1(x), attn_bias, rel_pos_index)))
        return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))

    def forward_at(self, x, index):
        """The block's output at the rows ``index`` [B, n] of x [B, N, dim] only -> [B, n, dim]:
        every row serves as key and value, only the chosen rows are queried and go through the MLP."""
        rows = x.gather(1, index[..., None].expand(-1, -1, x.shape[-1]))
        rows = rows + self.drop_path1(self.ls1(self.attn.forward_at(self.norm1(x), index)))
        return rows + self.drop_path2(self.ls2(self.mlp(self.norm2(rows))))


class PatchEmbed(nn.Module):
    """Non-overlapping patches -> tokens: [B, C, H, W] -> [B, (H/p)(W/p), dim] via ``proj`` conv."""

    def __init__(self, patch_size=16, in_chans=3, embed_dim=768, norm=False, norm_eps=1e-6):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, patch_size)
        self.norm = nn.LayerNorm(embed_dim, eps=norm_eps) if norm else nn.Identity()

    def reset_as_linear(self):
        """xavier-uniform ``proj`` weight viewed as a [dim, C*p*p] matrix (MAE / JAX ViT / the
        LocalMIM release); the conv bias keeps PyTorch's default init."""
        w = self.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))

    def grid_size(self, height, width):
        p = self.patch_size
        if height % p or width % p:
            raise ValueError(f'input size {height}x{width} is not divisible by the patch size {p}')
        return height // p, width // p

    def forward(self, x, index=None):
        """x [B, C, H, W] -> tokens [B, L, dim] in raster order; with ``index`` ([B, n] per
        image, or [n] shared by the batch) only those patches -> [B, n, dim].

        Selected patches are embedded as a GEMM on the flattened patches (the same function as
        ``proj``: its weight viewed as [dim, C*p*p]), so compute follows the kept patches. On an
        H200 this replaced 4.8 ms of cuDNN convolution per ViT-B batch of 256 (layout changes
        around a 16x16/16 kernel) by about 0.3 ms.
        """
        h, w = self.grid_size(*x.shape[-2:])
        if index is None:
            return self.norm(self.proj(x).flatten(2).transpose(1, 2))
        B, C = x.shape[:2]
        p = self.patch_size
        patches = x.view(B, C, h, p, w, p).permute(0, 2, 4, 1, 3, 5).reshape(B, h * w, C * p * p)
        if index.dim() == 1:
            patches = patches.index_select(1, index)
        else:
            patches = patches.gather(1, index[..., None].expand(-1, -1, patches.shape[-1]))
        return self.norm(F.linear(patches, self.proj.weight.flatten(1), self.proj.bias))


def tokens_to_map(tokens, h, w):
    """Tokens [B, h*w, D] in raster order -> a contiguous map [B, D, h, w].

    Contiguous on purpose: the plain ``transpose().reshape()`` is a channels-last *view*, and
    mmcv's compiled ops (RoIAlign on CPU and CUDA) read the raw NCHW memory of their input without
    checking its strides, so a view made Mask R-CNN's RoI features garbage. Convolutions also keep
    a channels-last input's layout, passing the view on through mmdet's FPN.
    """
    return tokens.transpose(1, 2).reshape(tokens.shape[0], -1, h, w).contiguous()


def sincos_pos_embed(dim, grid_hw, with_cls=False):
    """Fixed 2-D sine-cosine position embedding [(1+)h*w, dim] (MAE's layout).

    The first half of the channels encodes the column, the second half the row; each half is
    [sin(pos * omega), cos(pos * omega)] with omega = 1 / 10000^(k / (dim/4)). A cls slot is zeros.
    """
    h, w = grid_hw
    assert dim % 4 == 0, f'sin-cos position embedding needs dim divisible by 4, got {dim}'
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4))
    rows, cols = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                                indexing='ij')

    def encode(pos):
        angles = pos.flatten()[:, None] * omega[None]
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    emb = torch.cat([encode(cols), encode(rows)], dim=1)
    if with_cls:
        emb = torch.cat([torch.zeros(1, dim, dtype=torch.float64), emb])
    return emb.float()


def init_transformer_weights(module):
    """MAE/JAX-ViT init: xavier-uniform Linear weights, zero biases, unit LayerNorm."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def rescale_layers(dim, scale, keep_channels=False, pool='max', norm=LayerNorm2d):
    """Layers taking [B, dim, h, w] to [B, c, h*scale, w*scale]; returns (layers, c).

    x4: deconv 2x2/2, norm, GELU, deconv; x2: deconv; x1: nothing; x0.5 / x0.25: 2x2 / 4x4 max or
    avg pool. Each
    deconv halves the channels unless ``keep_channels``. Used by the LocalMIM decoders (halving,
    avg pool) and the simple feature pyramid. ``norm(channels)`` builds the channels-first norm.
    """
    half = (lambda c: c) if keep_channels else (lambda c: c // 2)
    if scale == 4:
        mid = half(dim)
        return [nn.ConvTranspose2d(dim, mid, 2, 2), norm(mid), nn.GELU(),
                nn.ConvTranspose2d(mid, half(mid), 2, 2)], half(mid)
    if scale == 2:
        return [nn.ConvTranspose2d(dim, half(dim), 2, 2)], half(dim)
    if scale == 1:
        return [], dim
    if scale in (0.5, 0.25):
        if pool not in ('max', 'avg'):
            raise ValueError(f"pool must be 'max' or 'avg', got {pool!r}")
        k = round(1 / scale)
        return [nn.MaxPool2d(k, k) if pool == 'max' else nn.AvgPool2d(k, k)], dim
    raise ValueError(f'rescale factor must be one of 4, 2, 1, 0.5, 0.25; got {scale}')


def apply_rescale_tokens(x, layers):
    """Apply :func:`rescale_layers`' layers to a channels-last grid x [B, h, w, C] -> [B, H, W, C'].

    The same function as running them on [B, C, h, w], with the same parameters, but every layer
    acts on the channels of each cell: a 2x2/2 transposed conv is one Linear to 4 C' channels per
    cell and a pixel shuffle, a 1x1 conv a Linear, the channel norm a plain LayerNorm. On CPU this
    is 1.3-1.7x faster forward + backward than the convolutions (GEMMs instead of deconvolutions,
    no layout changes between layers).
    """
    for layer in layers:
        if isinstance(layer, nn.ConvTranspose2d):
            assert layer.kernel_size == layer.stride == (2, 2) and layer.padding == (0, 0)
            B, h, w, _ = x.shape
            out = layer.out_channels
            weight = layer.weight.permute(2, 3, 1, 0).reshape(4 * out, -1)  # rows (di, dj, out)
            x = F.linear(x, weight, None if layer.bias is None else layer.bias.repeat(4))
            x = x.view(B, h, w, 2, 2, out).permute(0, 1, 3, 2, 4, 5).reshape(B, 2 * h, 2 * w, out)
        elif isinstance(layer, nn.Conv2d):
            assert layer.kernel_size == (1, 1) and layer.stride == (1, 1)
            x = F.linear(x, layer.weight.flatten(1), layer.bias)
        elif isinstance(layer, nn.LayerNorm):
            x = F.layer_norm(x, layer.normalized_shape, layer.weight, layer.bias, layer.eps)
        elif isinstance(layer, (nn.AvgPool2d, nn.MaxPool2d)):
            B, h, w, C = x.shape
            k = layer.kernel_size
            assert k == layer.stride and not layer.padding
            cells = x.view(B, h // k, k, w // k, k, C)
            x = cells.mean((2, 4)) if isinstance(layer, nn.AvgPool2d) else cells.amax((2, 4))
        else:
            x = layer(x)  # elementwise (GELU)
    return x
