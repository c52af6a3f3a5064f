"""Swin Transformer that runs on any subset of its tokens: one class for LocalMIM and downstream.

Without a mask it is a standard Swin (patch 4, shifted windows, relative position bias, patch
merging, no absolute position embedding). With a mask (one per batch, on a grid of units that
stay whole through every patch merging, 32 px for 4 stages) the masked tokens are DROPPED, so
compute scales with the visible tokens, and every visible token gets exactly what a dense Swin
restricted to the visible tokens would give it:

- window attention: each token attends to the present tokens of its own window, with the
  relative position bias of the true coordinates. Shifted layers keep Swin's semantics: a window
  that would wrap around the border is split into its separate regions (what the cyclic shift +
  attention mask of Swin does). On each axis the window group is ``(coord + window - shift) // window``.
- the groups are packed first-fit-decreasing into bins of one size; one bin is one attention
  problem, with a block-diagonal mask between the groups sharing it. Padding slots form a group
  of their own, so no row is fully masked and the result is exact. The whole block runs in this
  packed layout (its other layers act per token).
- static shapes (masked plans; ``plans``' default, and LocalMIM's when its step is compiled): the
  number and size of the bins of each layer depend only on (input grid, mask grid, number of
  visible units), not on where the units are, so a
  compiled step (CUDA graphs) never recompiles for a new mask. They are fixed once per count from
  up to ``PLACEMENTS`` placements of the units (all of them when there are fewer; seeded otherwise):
  the (bins, size) of least estimated cost that fits every one of them. A rare placement that does
  not fit falls back to a worst-case layout that fits any (a second shape, compiled once). Swin-B
  at 224, 12 of 49 units: stage 0 12 bins of 72 / 15 of 56 (unshifted / shifted; 864 / 840 slots
  for 768 tokens), stage 1 3 bins of 72 (216 for 192), one bin of all tokens in stages 2-3; about
  1.5e-4 of the random masks need the fallback. Without a mask (or ``static=False``) the bins fit
  the mask at hand (size at most window^2).
- grids that the window does not divide: windows at the border are simply smaller (no padding
  tokens); timm/mmdet pad with zero tokens that real tokens then attend to.
- patch merging concatenates the 2x2 neighbours in the standard Swin/timm order
  (row, col) = (0,0), (1,0), (0,1), (1,1); masked units are whole, so merged groups are complete.

All index tensors depend on the mask only (shared by the batch), are built once per forward and
reused by every block ("plans"). Parameter names are timm's (``patch_embed``, ``layers.{i}.downsample``
at the START of stages 1-3, ``layers.{i}.blocks.{j}``, ``norm``), so timm weights load as they are.

LayerNorm eps is 1e-6 everywhere (pretraining and downstream alike), so pretrained weights transfer
exactly; the release used 1e-6 in pretraining and 1e-5 downstream, a mismatch we do not copy.
"""
import itertools
import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch.utils.checkpoint import checkpoint

from ..registry import MODELS
from .layers import Block, PatchEmbed, init_transformer_weights, tokens_to_map
from .pretrained_arg import ignore_inherited_pretrained

SWIN_ARCHS = {
    # name: (embed_dim, depths, num_heads)
    'tiny': (96, (2, 2, 6, 2), (3, 6, 12, 24)),
    'small': (96, (2, 2, 18, 2), (3, 6, 12, 24)),
    'base': (128, (2, 2, 18, 2), (4, 8, 16, 32)),
    'large': (192, (2, 2, 18, 2), (6, 12, 24, 48)),
}

MERGE_ORDER = ((0, 0), (1, 0), (0, 1), (1, 1))  # (row, col) offsets of the 4 merged neighbours
PLACEMENTS = 2000  # mask placements that fix the static bins of a visible count (see the module doc)


# ---- plans: index tensors for one token subset ---------------------------------------------------
# Built with numpy on the host (small integer work; torch's per-op overhead made it 10x slower),
# then handed to the model's device once, without waiting for it.
def to_device(tensor, device):
    """Host tensor -> ``device`` without a synchronisation (pinned, non-blocking copy on CUDA)."""
    device = torch.device(device or 'cpu')
    if device.type == 'cuda' and tensor.device.type == 'cpu':
        tensor = tensor.pin_memory()
    return tensor.to(device, non_blocking=True)


def _tensor(array, device):
    return to_device(torch.from_numpy(np.ascontiguousarray(array)), device)


def host_array(mask):
    """A mask as a numpy array; a tensor on an accelerator is read back (a host sync: training
    passes host masks, see ``LocalMIM.get_mask``)."""
    if isinstance(mask, torch.Tensor):
        return (mask if mask.device.type == 'cpu' else mask.cpu()).numpy()
    return np.asarray(mask)


@dataclass
class WindowPlan:
    """How one (shifted) window-attention layer packs a stage's N present tokens.

    gather: [bins * size] token in each slot (padding slots repeat token 0).
    scatter: [N] slot of each token.
    rel_index: [bins, size, size] relative-position table row of each slot pair (0 across groups).
    attend: bool [bins, 1, size, size], True within a group (padding slots: among themselves);
        None only in unmasked plans whose bins are all one full window.
    """
    gather: torch.Tensor
    scatter: torch.Tensor
    rel_index: torch.Tensor
    attend: torch.Tensor
    bins: int
    size: int


@dataclass
class StagePlan:
    """Present tokens of one stage (raster order) and how to reach and run them.

    grid: (h, w) of the stage. index: [N] raster positions of the present tokens.
    merge_index: [N, 4] rows of the previous stage's tokens merged into each token (index N_prev
    = zero padding at an odd border; ``zero_padded``: the previous grid is odd, so a zero token is
    appended), None for stage 0. windows: plans of the unshifted and, if the stage shifts, the
    shifted layers (block j uses ``windows[j % len(windows)]``).
    """
    grid: tuple
    index: torch.Tensor
    merge_index: torch.Tensor
    zero_padded: bool
    windows: list


def first_fit_decreasing(sizes, capacity):
    """Bin packing: (bin, offset in bin) of every item, and the number of bins."""
    place, free = [None] * len(sizes), []  # free: remaining capacity of each bin
    partial = []  # bins with room left, in creation order
    for item in sorted(range(len(sizes)), key=lambda i: -sizes[i]):
        size = sizes[item]
        target = next((b for b in partial if free[b] >= size), None)
        if target is None:
            target = len(free)
            free.append(capacity)
            partial.append(target)
        place[item] = (target, capacity - free[target])
        free[target] -= size
        if free[target] == 0:
            partial.remove(target)
    return place, len(free)


def best_packing(sizes, window_area):
    """First-fit-decreasing packing of group ``sizes`` into bins of one size, chosen between the
    largest group and ``window_area`` for the fewest slots in all (least padding for the per-token
    layers), then the smaller bins. Candidates: the largest group, the window area and the sizes
    that would split the tokens evenly into the 4 smallest feasible bin counts.
    Returns (place, bins, size)."""
    total, largest = sum(sizes), max(sizes)
    fewest = -(-total // window_area)
    candidates = {largest, window_area} | {-(-total // k) for k in range(fewest, fewest + 4)}
    best = None
    for size in sorted(c for c in candidates if largest <= c <= window_area):
        place, bins = first_fit_decreasing(sizes, size)
        if best is None or bins * size < best[1] * best[2]:
            best = (place, bins, size)
    return best


def static_layout(samples, window_area, dim):
    """(bins, size) that first-fit-decreasing fits every sample of group sizes into (all samples
    hold the same N tokens), at the least estimated cost ``bins * size * (6 * dim + size)``
    (per-token layers + attention FLOPs), then the smaller size. Sizes: one bin of all N tokens
    (when N <= 2 * window_area), the window area and the multiples of 8 up to twice it."""
    num = sum(samples[0])
    sizes = {window_area, *range(-(-window_area // 8) * 8, 2 * window_area + 1, 8)}
    sizes = {s for s in sizes if s < num} | ({num} if num <= 2 * window_area else set())
    best, best_cost = None, math.inf
    for size in sorted(sizes):
        bins = -(-num // size)
        for groups in samples:  # stops once this size cannot win
            if bins * size * (6 * dim + size) >= best_cost:
                break
            bins = max(bins, first_fit_decreasing(groups, size)[1])
        if bins * size * (6 * dim + size) < best_cost:
            best, best_cost = (bins, size), bins * size * (6 * dim + size)
    return best


def worst_case_bins(num, grid, window, shift):
    """Bins of window_area that first-fit-decreasing needs at most for any N=``num`` tokens of a
    (shifted) window layout: no more than its windows, and every bin but the last is over half
    full (a bin opened for a group of x means each earlier one holds > area - x, and a group >= x)."""
    area = window * window
    windows = math.prod(int(window_groups(np.arange(n), n, window, shift).max()) + 1 for n in grid)
    return min(windows, 1 + (num - 1) // ((area + 2) // 2))


def static_packing(sizes, layout, grid, window, shift):
    """First-fit-decreasing packing of group ``sizes`` into the static ``layout`` (bins, size),
    or, if this placement needs more bins, into the worst-case layout of window_area bins.
    Returns (place, bins, size)."""
    bins, size = layout
    place, used = first_fit_decreasing(sizes, size)
    if used <= bins:
        return place, bins, size
    num, size = sum(sizes), window * window
    bins = worst_case_bins(num, grid, window, shift)
    warnings.warn(f'a mask placement needs {used} window bins of {layout[1]} tokens where {layout[0]} were '
                  f'fixed for its visible count ({num} tokens on a {grid[0]}x{grid[1]} stage): it uses the '
                  f'worst-case {bins} bins of {size} (another shape: a compiled step compiles once more)')
    place, used = first_fit_decreasing(sizes, size)
    assert used <= bins, (used, bins)
    return place, bins, size


def window_groups(coords, length, window, shift):
    """Window group of each coordinate along one axis of ``length`` tokens.

    Shifted: ``(coord + window - shift) // window``, so the border windows that a cyclic shift
    would join stay apart. An axis no longer than the window is one group and never shifts.
    """
    if length <= window:
        return np.zeros_like(coords)
    return (coords + window - shift) // window


def window_group_sizes(rows, cols, grid, window, shift):
    """Group of each present token at (rows, cols) [N] (numpy, in 0..G-1) and the G group sizes."""
    group = (window_groups(rows, grid[0], window, shift) * (grid[1] // window + 2)
             + window_groups(cols, grid[1], window, shift))
    _, group, counts = np.unique(group, return_inverse=True, return_counts=True)
    return group, counts


def window_plan(rows, cols, grid, window, shift, layout=None, device=None):
    """:class:`WindowPlan` for present tokens at (rows, cols) [N] (numpy) of a ``grid`` stage.

    Tokens are grouped by (shifted) window; the groups are packed into the static ``layout``
    (bins, size) by :func:`static_packing`, or, without one, as tightly as :func:`best_packing`
    finds (e.g. into one bin of 12 when 12 tokens remain in a 7x7 last stage).
    """
    num = rows.size
    group, counts = window_group_sizes(rows, cols, grid, window, shift)
    if layout is None:
        place, bins, size = best_packing(counts.tolist(), window * window)
    else:
        place, bins, size = static_packing(counts.tolist(), layout, grid, window, shift)
    first_slot = np.array([b * size + offset for b, offset in place])
    order = np.argsort(group, kind='stable')  # tokens grouped, raster order within a group
    starts = np.cumsum(counts) - counts
    scatter = np.empty(num, dtype=np.int64)
    scatter[order] = first_slot[group[order]] + np.arange(num) - starts[group[order]]
    gather = np.zeros(bins * size, dtype=np.int64)
    gather[scatter] = np.arange(num)
    label, position = np.full(bins * size, -1), np.zeros(bins * size, dtype=np.int64)
    label[scatter] = group
    # (row, col) -> row * (2w - 1) + col, so that the difference of two positions plus
    # (w - 1)(2w - 1) + (w - 1) is Swin's table row for their offset (|offsets| < w in a group)
    position[scatter] = rows * (2 * window - 1) + cols
    label, position = label.reshape(bins, size), position.reshape(bins, size)
    same = label[:, :, None] == label[:, None, :]
    rel_index = np.where(same, position[:, :, None] - position[:, None, :] + (window - 1) * 2 * window, 0)
    one_window_per_bin = layout is None and num == bins * size and counts.size == bins
    attend = None if one_window_per_bin else _tensor(same[:, None], device)
    return WindowPlan(_tensor(gather, device), _tensor(scatter, device), _tensor(rel_index, device), attend,
                      bins, size)


def merge_plan(rows, cols, grid, stage):
    """Patch merging of present tokens (rows, cols) [N] (numpy) on ``grid``: (coarse rows,
    coarse cols, merge_index [N2, 4]). A 2x2 cell is present if any child is; its other children
    must lie outside an odd border (zero padding, as timm) or the mask does not survive the merge."""
    (h, w), num = grid, rows.size
    lookup = np.full(h * w, -1)
    lookup[rows * w + cols] = np.arange(num)
    coarse_w = (w + 1) // 2
    cells = np.unique((rows // 2) * coarse_w + cols // 2)
    coarse_rows, coarse_cols = cells // coarse_w, cells % coarse_w
    children = []
    for dr, dc in MERGE_ORDER:
        r, c = 2 * coarse_rows + dr, 2 * coarse_cols + dc
        inside = (r < h) & (c < w)
        child = np.where(inside, lookup[np.minimum(r, h - 1) * w + np.minimum(c, w - 1)], num)
        if (child < 0).any():
            raise ValueError(f'the mask splits a 2x2 patch-merging group before stage {stage} '
                             f'(grid {h}x{w}): masked units must cover whole merged tokens at every '
                             f'stage, i.e. be multiples of patch_size * 2**(num_stages - 1) pixels')
        children.append(child)
    return coarse_rows, coarse_cols, np.stack(children, 1)


# ---- modules -------------------------------------------------------------------------------------
class PatchMerging(nn.Module):
    """2x2 neighbours -> one token: concat (standard order, see MERGE_ORDER) [.., 4C] -> norm -> reduction."""

    def __init__(self, dim, out_dim, norm_eps=1e-6):
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim, eps=norm_eps)
        self.reduction = nn.Linear(4 * dim, out_dim, bias=False)

    def forward(self, x, merge_index, zero_padded=False):
        """x: [B, N, C]; merge_index: [N2, 4] into x, where N (``zero_padded`` only) is a zero
        token. Returns [B, N2, out_dim]."""
        B, N, C = x.shape
        if zero_padded:
            x = torch.cat([x, x.new_zeros(B, 1, C)], dim=1)
        x = x.index_select(1, merge_index.flatten()).view(B, -1, 4 * C)
        return self.reduction(self.norm(x))


class SwinStage(nn.Module):
    """Optional patch merging (stages 1-3, as timm) then ``depth`` blocks, odd ones shifted."""

    def __init__(self, dim, out_dim, depth, num_heads, window, downsample, mlp_ratio, qkv_bias,
                 drop_path, norm_eps):
        super().__init__()
        self.window = window
        self.downsample = PatchMerging(dim, out_dim, norm_eps) if downsample else None
        self.blocks = nn.ModuleList(
            Block(out_dim, num_heads, mlp_ratio, qkv_bias, drop_path=drop_path[j], norm_eps=norm_eps,
                  rel_pos_grid=(window, window))
            for j in range(depth))


def resize_rel_pos_table(table, window):
    """Bicubic resize of a relative position table [(2w'-1)^2, heads] to a ``window`` one."""
    side = math.isqrt(table.shape[0])
    if side * side != table.shape[0]:
        raise ValueError(f'relative position table with {table.shape[0]} rows is not square')
    new_side = 2 * window - 1
    grid = table.float().t().reshape(1, -1, side, side)
    grid = F.interpolate(grid, size=(new_side, new_side), mode='bicubic', align_corners=False)
    return grid.reshape(-1, new_side * new_side).t().to(table.dtype)


@MODELS.register_module()
class SwinTransformer(BaseModule):
    """Swin Transformer for LocalMIM pretraining (with a mask) and downstream tasks (without).

    Args:
        arch: one of ``SWIN_ARCHS`` or None to give ``embed_dim``/``depths``/``num_heads``.
        img_size: reference input size: fixes each stage's window (a stage no larger than the
            window gets a window of its size and no shift, as Swin/timm) and the decoder grids.
        window_size: attention window (7; the release's Swin-L uses 14).
        norm_eps: LayerNorm eps of every norm (1e-6; see the module doc).
        out_indices: stages whose outputs :meth:`forward` returns, each normalised by
            ``norm{i}`` (the last stage by ``norm``, timm's final norm).
        final_norm: have the final ``norm`` (False in pretraining: LocalMIM's tap norms
            normalise the taps, and the last one becomes ``norm`` when a backbone is exported).
        with_cp: activation checkpointing of every block.
        pretrained: ignored with a warning (mmseg's ``model.pretrained`` of a stock config; load
            weights with ``init_cfg``).

    Layer ids for layer-wise lr decay (:meth:`get_layer_depth`, the release/SimMIM convention):
    patch embedding 0, block j of stage i ``sum(depths[:i]) + j + 1``, the patch merging in front
    of stage i the id of stage i-1's last block, everything else ``sum(depths) + 1`` (26 for Swin-B).
    """

    def __init__(self, arch='base', img_size=224, patch_size=4, in_chans=3, embed_dim=128,
                 depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32), window_size=7, mlp_ratio=4.,
                 qkv_bias=True, drop_path_rate=0., norm_eps=1e-6, out_indices=(3,), final_norm=True,
                 with_cp=False, init_cfg=None, pretrained=None):
        super().__init__(init_cfg=init_cfg)
        ignore_inherited_pretrained(pretrained, 'localmim.SwinTransformer')
        if arch is not None:
            if arch not in SWIN_ARCHS:
                raise KeyError(f'unknown Swin arch {arch!r}; choose one of {sorted(SWIN_ARCHS)}')
            embed_dim, depths, num_heads = SWIN_ARCHS[arch]
        self.depths, self.num_stages = list(depths), len(depths)
        self.img_size, self.patch_size, self.num_prefix_tokens = img_size, patch_size, 0
        self.dims = [embed_dim * 2 ** i for i in range(self.num_stages)]
        self.embed_dim, self.num_features = embed_dim, self.dims[-1]
        self.out_indices = [i % self.num_stages for i in out_indices]
        self.with_cp = with_cp
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim, norm=True, norm_eps=norm_eps)
        drop_path = [drop_path_rate * k / max(sum(depths) - 1, 1) for k in range(sum(depths))]  # linear
        self.layers = nn.ModuleList()
        for i in range(self.num_stages):
            grid = img_size // patch_size // 2 ** i
            first = sum(depths[:i])
            self.layers.append(SwinStage(
                self.dims[max(i - 1, 0)], self.dims[i], depths[i], num_heads[i], min(window_size, grid),
                i > 0, mlp_ratio, qkv_bias, drop_path[first:first + depths[i]], norm_eps))
        for i in self.out_indices:
            if i != self.num_stages - 1:
                self.add_module(f'norm{i}', nn.LayerNorm(self.dims[i], eps=norm_eps))
        self.norm = nn.LayerNorm(self.dims[-1], eps=norm_eps) if final_norm else nn.Identity()
        self._unmasked_plans, self._static_layouts = {}, {}
        # the release's init: xavier-uniform Linear weights and patch-embedding conv (as a matrix),
        # zero Linear biases, LayerNorm 1/0; relative position tables truncated normal 0.02
        self.apply(init_transformer_weights)
        self.patch_embed.reset_as_linear()
        self.register_load_state_dict_pre_hook(self._resize_rel_pos_tables)

    def _resize_rel_pos_tables(self, module, state_dict, prefix, *args):
        """Load-time hook: tables of another window size are resized bicubically."""
        for name, param in self.named_parameters():
            key = prefix + name
            if name.endswith('relative_position_bias_table') and key in state_dict \
                    and state_dict[key].shape != param.shape:
                state_dict[key] = resize_rel_pos_table(state_dict[key], (math.isqrt(param.shape[0]) + 1) // 2)

    # ---- hooks for callers (timm style) -------------------------------------------------------
    def no_weight_decay(self):
        return {n for n, _ in self.named_parameters() if n.endswith('relative_position_bias_table')}

    def feature_info(self, indices):
        """(channels, stride) of the taps of :meth:`forward_intermediates`."""
        stages = [min(i % self.num_stages + 1, self.num_stages - 1) for i in indices]
        return [(self.dims[s], self.patch_size * 2 ** s) for s in stages]

    def out_channels(self):
        """Channels of each map :meth:`forward` returns (stage ``i`` of ``out_indices``: ``dims[i]``)."""
        return [self.dims[i] for i in self.out_indices]

    def get_layer_depth(self, param_name, prefix=''):
        """(layer id, number of layers) for layer-wise lr decay; see the class doc."""
        num_layers = sum(self.depths) + 2
        name = param_name[len(prefix):] if param_name.startswith(prefix) else param_name
        if name.startswith('patch_embed'):
            return 0, num_layers
        if name.startswith('layers.'):
            parts = name.split('.')
            stage = int(parts[1])
            if parts[2] == 'downsample':
                return sum(self.depths[:stage]), num_layers
            return sum(self.depths[:stage]) + int(parts[3]) + 1, num_layers
        return num_layers - 1, num_layers

    # ---- plans --------------------------------------------------------------------------------
    def present_tokens(self, grid, mask):
        """Coordinates (rows, cols) [N] (numpy) of the stage-0 tokens to run: all, or the unmasked ones.

        mask: bool [B, h, w] (or [h, w]), True = masked, the same for every image, on a unit
        grid that tiles the token grid.
        """
        if mask is None:
            return np.divmod(np.arange(grid[0] * grid[1]), grid[1])
        mask = host_array(mask).astype(bool)
        mask = mask[None] if mask.ndim == 2 else mask
        if not (mask == mask[:1]).all():
            raise ValueError('SwinTransformer drops masked tokens with ONE mask per batch: every image '
                             'must have the same mask (LocalMIM: mask_per_sample=False)')
        (mh, mw), (gh, gw) = mask.shape[-2:], grid
        if gh % mh or gw % mw:
            raise ValueError(f'a {mh}x{mw} mask does not tile the {gh}x{gw} token grid of a '
                             f'{gh * self.patch_size}x{gw * self.patch_size} input')
        keep = (~mask[0]).repeat(gh // mh, 0).repeat(gw // mw, 1)
        if not keep.any():
            raise ValueError('the mask hides every token')
        return np.nonzero(keep)

    def stage_tokens(self, grid, rows, cols, num_stages):
        """Present tokens of each stage from those of stage 0 at (rows, cols) [N] (numpy): yields
        (grid, rows, cols, merge_index [N, 4] or None for stage 0, window, shifts) per stage."""
        merge_index = None
        for i in range(num_stages):
            if i > 0:
                rows, cols, merge_index = merge_plan(rows, cols, grid, i)
                grid = ((grid[0] + 1) // 2, (grid[1] + 1) // 2)
            window = self.layers[i].window
            shifted = len(self.layers[i].blocks) > 1 and (grid[0] > window or grid[1] > window)
            yield grid, rows, cols, merge_index, window, [0, window // 2] if shifted else [0]

    def static_layouts(self, grid, mask_grid, num_visible, num_stages):
        """(bins, size) of every stage's window plans ([stage][shift]) for masks of ``num_visible``
        units on a ``mask_grid`` over an input ``grid``, fitting up to ``PLACEMENTS`` placements of
        the units (see the module doc; placements that split a merging group cannot occur and are
        skipped). Cached per arguments."""
        key = (tuple(grid), tuple(mask_grid), num_visible, num_stages)
        if key in self._static_layouts:
            return self._static_layouts[key]
        cells = mask_grid[0] * mask_grid[1]
        if math.comb(cells, num_visible) <= PLACEMENTS:
            placements = itertools.combinations(range(cells), num_visible)
        else:
            rng = np.random.default_rng(0)
            placements = (rng.choice(cells, num_visible, replace=False) for _ in range(PLACEMENTS))
        samples = {}  # (stage, shift index) -> set of sorted group sizes
        for visible in placements:
            mask = np.ones(cells, dtype=bool)
            mask[list(visible)] = False
            found = {}
            try:
                stages = self.stage_tokens(grid, *self.present_tokens(grid, mask.reshape(mask_grid)), num_stages)
                for i, (stage_grid, rows, cols, _, window, shifts) in enumerate(stages):
                    for k, shift in enumerate(shifts):
                        sizes = window_group_sizes(rows, cols, stage_grid, window, shift)[1]
                        found[i, k] = tuple(sorted(sizes.tolist(), reverse=True))
            except ValueError:
                continue
            for where, sizes in found.items():
                samples.setdefault(where, set()).add(sizes)
        if not samples:
            raise ValueError(f'no placement of {num_visible} visible units on a {mask_grid[0]}x{mask_grid[1]} '
                             f'mask survives the patch merging of a {grid[0]}x{grid[1]} token grid')
        layouts = [[] for _ in range(num_stages)]
        for (i, _), groups in sorted(samples.items()):
            layouts[i].append(static_layout(sorted(groups), self.layers[i].window ** 2, self.dims[i]))
        self._static_layouts[key] = layouts
        return layouts

    def plans(self, grid, mask=None, num_stages=None, device=None, static=True):
        """One :class:`StagePlan` per stage (the first ``num_stages``) for an input ``grid``.

        Depends on the mask only (not on the images); plans without a mask are cached per
        (grid, stages, device), since downstream input sizes repeat. static: with a mask, shapes
        that depend on the number of visible units only (:meth:`static_layouts`); False packs the
        windows as tightly as this mask allows (less padding, shapes vary with the mask).
        """
        num_stages = num_stages or self.num_stages
        key = (tuple(grid), num_stages, str(device))
        if mask is None and key in self._unmasked_plans:
            return self._unmasked_plans[key]
        mask = None if mask is None else host_array(mask).astype(bool)
        stages = list(self.stage_tokens(grid, *self.present_tokens(grid, mask), num_stages))  # checks the mask
        layouts = None
        if mask is not None and static:
            visible = int((~mask.reshape(-1, *mask.shape[-2:])[0]).sum())
            layouts = self.static_layouts(grid, mask.shape[-2:], visible, num_stages)
        plans, previous = [], grid
        for i, (stage_grid, rows, cols, merge_index, window, shifts) in enumerate(stages):
            windows = [window_plan(rows, cols, stage_grid, window, shift, None if layouts is None else layouts[i][k],
                                   device)
                       for k, shift in enumerate(shifts)]
            zero_padded = bool(previous[0] % 2 or previous[1] % 2) and merge_index is not None
            if merge_index is not None:
                merge_index = _tensor(merge_index, device)
            plans.append(StagePlan(stage_grid, _tensor(rows * stage_grid[1] + cols, device), merge_index,
                                   zero_padded, windows))
            previous = stage_grid
        if mask is None:
            if len(self._unmasked_plans) >= 8:
                self._unmasked_plans.pop(next(iter(self._unmasked_plans)))
            self._unmasked_plans[key] = plans
        return plans

    # ---- forward ------------------------------------------------------------------------------
    def run_blocks(self, stage, x, plan):
        """Blocks of one stage on present tokens [B, N, C] (raster order) -> [B, N, C]."""
        B, _, C = x.shape
        where = None  # slot of each token in the current packed layout (None: raster)
        for j, block in enumerate(stage.blocks):
            pack = plan.windows[j % len(plan.windows)]
            index = pack.gather if where is None else where[pack.gather]
            x = x.index_select(1, index).view(B, pack.bins, pack.size, C)
            if self.with_cp and x.requires_grad:
                x = checkpoint(block, x, pack.attend, pack.rel_index, use_reentrant=False)
            else:
                x = block(x, pack.attend, pack.rel_index)
            x, where = x.flatten(1, 2), pack.scatter
        return x.index_select(1, where)

    def run_stages(self, x, plans, points, detach_between=False):
        """Run the stages of ``plans`` on stage-0 tokens x [B, N, C] (present ones, raster order)
        and return the features at ``points``: (stage, 'in') = after the stage's patch merging,
        (stage, 'out') = after its blocks; each [B, N_stage, C_stage], raster order."""
        found = {}
        for i, plan in enumerate(plans):
            stage = self.layers[i]
            for where in ('in', 'out'):
                if where == 'in' and stage.downsample is not None:
                    x = stage.downsample(x, plan.merge_index, plan.zero_padded)
                elif where == 'out':
                    x = self.run_blocks(stage, x, plan)
                if (i, where) in points:
                    found[(i, where)] = x
                    if len(found) == len(set(points)):
                        return [found[p] for p in points]
                    if detach_between:
                        x = x.detach()
        raise ValueError(f'points {points} are not all within {len(plans)} stages')

    def tap_points(self, indices):
        """Tap i: stage i's output after the next stage's patch merging ((i+1, 'in')); the last
        stage: its output. For Swin-B at 224: 256-d @ 28x28, 512 @ 14x14, 1024 @ 7x7, 1024 @ 7x7."""
        last = self.num_stages - 1
        return [(i + 1, 'in') if i < last else (last, 'out') for i in (j % self.num_stages for j in indices)]

    def mask_plans(self, grid, mask, indices, device=None, static=True):
        """The :meth:`plans` that :meth:`forward_intermediates` with these ``indices`` needs.
        Built on the host from a host ``mask``; pass them to it to keep the forward sync-free."""
        return self.plans(grid, mask, max(s for s, _ in self.tap_points(indices)) + 1, device, static)

    def forward_tokens(self, tokens, grid, indices, mask=None, detach_between=False, plans=None):
        """:meth:`forward_intermediates` from patch-embedded tokens [B, h*w, C] of a ``grid``."""
        if plans is None:
            plans = self.mask_plans(grid, mask, indices, tokens.device)
        if mask is not None:
            tokens = tokens.index_select(1, plans[0].index)
        return self.run_stages(tokens, plans, self.tap_points(indices), detach_between)

    def forward_intermediates(self, x, indices, mask=None, detach_between=False, plans=None):
        """Raw features at the taps ``indices`` (see :meth:`tap_points`), present tokens only.

        x: images [B, C, H, W]. mask: optional bool [B, h, w] on a unit grid (e.g. 7x7 units of
        32 px at 224), True = masked, the same for every image; masked tokens are dropped.
        Returns one [B, N_vis_i, C_i] per tap, raster order of the tap's grid, no cls token.
        detach_between: cut the gradient after each tap (gradient-isolated segments).
        plans: :meth:`mask_plans` of this mask, built ahead (otherwise built here, from the mask
        read back to the host).
        """
        grid = self.patch_embed.grid_size(*x.shape[-2:])
        if mask is None:
            return self.forward_tokens(self.patch_embed(x), grid, indices, None, detach_between, plans)
        if plans is None:
            plans = self.mask_plans(grid, mask, indices, x.device)
        tokens = self.patch_embed(x, plans[0].index)  # only the visible patches are embedded
        return self.run_stages(tokens, plans, self.tap_points(indices), detach_between)

    def forward(self, x):
        """Images [B, C, H, W] -> tuple of normalised maps [B, C_i, H_i, W_i], one per ``out_indices``."""
        grid = self.patch_embed.grid_size(*x.shape[-2:])
        plans = self.plans(grid, None, max(self.out_indices) + 1, x.device)
        outs = self.run_stages(self.patch_embed(x), plans, [(i, 'out') for i in self.out_indices])
        maps = []
        for i, out in zip(self.out_indices, outs):
            norm = self.norm if i == self.num_stages - 1 else getattr(self, f'norm{i}')
            h, w = plans[i].grid
            maps.append(tokens_to_map(norm(out), h, w))
        return tuple(maps)
