"""Attention analysis of a ViT encoder: mean attention distance and query-adaptivity (NMI) per layer.

Attention maps are not materialised by the fused attention, so :class:`AttentionRecorder`
recomputes them from each block's ``attn.qkv`` on the block's normed input (a forward pre-hook on
``blocks[i].attn``): softmax(q k^T / sqrt(head_dim) + relative-position bias + attn_bias).

Both statistics use patch tokens only: the prefix (cls) rows and columns are dropped and each
query row is renormalised to sum to 1 over the patch keys.

- Mean attention distance (ViT paper / MAE analyses): per head, sum_j a_ij * ||pos_i - pos_j||
  in input pixels (patch-grid distance times the patch size), averaged over queries and images.
- Query adaptivity as normalised mutual information between query and key positions: the head's
  map is read as a joint distribution p(q, k) = a_qk / N with uniform queries p(q) = 1/N, and
  NMI = I(Q; K) / sqrt(H(Q) H(K)). It is 0 when every query has the same attention row (the map
  does not depend on the query, i.e. attention collapse) and 1 for a permutation (each query
  attends to exactly one key, distinct per query); 0 is also returned when H(K) = 0.
Per head values are averaged over images; the per-layer value is the mean over heads.
"""
import csv

import torch

from localmim.models.rel_pos import decomposed_rel_pos_qk

__all__ = ['attention_probs', 'AttentionRecorder', 'patch_attention', 'grid_positions',
           'mean_attention_distance', 'attention_nmi', 'find_vit', 'attention_statistics',
           'write_statistics_csv', 'plot_statistics']


def attention_probs(attn, x, attn_bias=None):
    """Attention probabilities [B, heads, N, N] of a ``localmim.models.layers.Attention`` on x [B, N, dim]."""
    B, N, C = x.shape
    heads = attn.num_heads
    q, k, _ = attn.qkv(x).view(B, N, 3, heads, C // heads).permute(2, 0, 3, 1, 4)
    scale = (C // heads) ** -0.5
    if attn.rel_pos_grid is not None and attn.rel_pos_type == 'decomposed':  # ViTDet: folded into q, k
        q, k = decomposed_rel_pos_qk(q, k, attn.rel_pos_h, attn.rel_pos_w, attn.rel_pos_grid, scale)
        scale = 1.0
    logits = (q @ k.transpose(-2, -1)) * scale
    if attn.rel_pos_grid is not None and attn.rel_pos_type == 'table':
        logits = logits + attn.relative_position_bias().to(logits.dtype)
    if attn_bias is not None:
        if attn_bias.dtype == torch.bool:
            attn_bias = torch.zeros_like(attn_bias, dtype=logits.dtype).masked_fill(~attn_bias, float('-inf'))
        logits = logits + attn_bias
    return logits.float().softmax(-1)


class AttentionRecorder:
    """Context manager recording the attention probabilities of ``blocks[i].attn`` during forwards.

    ``maps[i]`` holds [B, heads, N, N] of the latest forward through block i.
    """

    def __init__(self, blocks, indices=None):
        self.blocks = blocks
        self.indices = list(range(len(blocks))) if indices is None else list(indices)
        self.maps, self.handles = {}, []

    def _hook(self, index):
        def hook(module, args, kwargs):
            attn_bias = args[1] if len(args) > 1 else kwargs.get('attn_bias')
            self.maps[index] = attention_probs(module, args[0], attn_bias)
        return hook

    def __enter__(self):
        self.handles = [self.blocks[i].attn.register_forward_pre_hook(self._hook(i), with_kwargs=True)
                        for i in self.indices]
        return self

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()
        self.handles = []


def patch_attention(attn, num_prefix_tokens):
    """Patch-to-patch part of attention [..., N, N]: prefix rows/columns dropped, rows renormalised."""
    patches = attn[..., num_prefix_tokens:, num_prefix_tokens:]
    return patches / patches.sum(-1, keepdim=True).clamp_min(1e-12)


def grid_positions(grid_hw, patch_size):
    """Pixel positions [h*w, 2] (row, col) of the patches of a grid in raster order."""
    rows, cols = torch.meshgrid(torch.arange(grid_hw[0]), torch.arange(grid_hw[1]), indexing='ij')
    return torch.stack([rows.flatten(), cols.flatten()], 1).float() * patch_size


def mean_attention_distance(attn, positions):
    """Mean over queries of sum_j a_ij ||pos_i - pos_j||: attn [..., L, L] (rows sum to 1),
    positions [L, 2] -> [...]."""
    distances = torch.cdist(positions.double(), positions.double())
    return (attn.double() * distances).sum(-1).mean(-1)


def _entropy(p, dim):
    return -torch.xlogy(p, p).sum(dim)


def attention_nmi(attn):
    """NMI between query and key positions of attention maps [..., Nq, Nk] (rows sum to 1) -> [...].

    p(q, k) = a_qk / Nq; I(Q;K) = H(K) - H(K|Q); NMI = I / sqrt(H(Q) H(K)), with H(Q) = log Nq.
    """
    attn = attn.double()
    nq = attn.shape[-2]
    key_marginal = attn.mean(-2)
    h_k = _entropy(key_marginal, -1)
    h_k_given_q = _entropy(attn, -1).mean(-1)
    h_q = torch.log(torch.tensor(float(nq), dtype=torch.float64))
    mutual = (h_k - h_k_given_q).clamp_min(0)
    denom = torch.sqrt(h_q * h_k)
    return torch.where(denom > 1e-12, mutual / denom.clamp_min(1e-12), torch.zeros_like(mutual))


def find_vit(model):
    """The ViT inside a model: the model itself, or its ``encoder`` / ``backbone``."""
    for candidate in (model, getattr(model, 'encoder', None), getattr(model, 'backbone', None)):
        if candidate is not None and hasattr(candidate, 'blocks') and hasattr(candidate, 'patch_embed') \
                and hasattr(candidate, 'forward_intermediates'):
            return candidate
    raise TypeError(f'{type(model).__name__} holds no plain ViT encoder (blocks + patch_embed); attention '
                    'analysis supports VisionTransformer encoders only')


@torch.no_grad()
def attention_statistics(encoder, inputs, batch_size=8):
    """Per block: mean attention distance (px) and NMI per head, averaged over images.

    Args:
        encoder: a ViT with ``blocks``, ``patch_size``, ``num_prefix_tokens``, ``forward_intermediates``.
        inputs: normalised images [B, 3, H, W] (full images, no mask).

    Returns:
        dict with ``distance`` and ``nmi``, each [depth, heads] (float64).
    """
    depth = len(encoder.blocks)
    p = encoder.patch_size
    positions = grid_positions((inputs.shape[-2] // p, inputs.shape[-1] // p), p)
    distance = nmi = 0
    with AttentionRecorder(encoder.blocks) as recorder:
        for start in range(0, inputs.shape[0], batch_size):
            batch = inputs[start:start + batch_size]
            encoder.forward_intermediates(batch, [depth - 1])
            maps = [patch_attention(recorder.maps.pop(i), encoder.num_prefix_tokens)  # [b, heads, L, L]
                    for i in range(depth)]
            distance = distance + torch.stack([mean_attention_distance(m, positions).sum(0) for m in maps])
            nmi = nmi + torch.stack([attention_nmi(m).sum(0) for m in maps])
    return dict(distance=distance / inputs.shape[0], nmi=nmi / inputs.shape[0])


def write_statistics_csv(stats, path):
    """CSV rows: model, layer, head (index or 'mean'), mean_attention_distance_px, nmi.

    stats: {model name: dict from :func:`attention_statistics`}.
    """
    with open(path, 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(['model', 'layer', 'head', 'mean_attention_distance_px', 'nmi'])
        for name, s in stats.items():
            for layer in range(s['distance'].shape[0]):
                for head in range(s['distance'].shape[1]):
                    writer.writerow([name, layer, head, f"{s['distance'][layer, head]:.4f}",
                                     f"{s['nmi'][layer, head]:.5f}"])
                writer.writerow([name, layer, 'mean', f"{s['distance'][layer].mean():.4f}",
                                 f"{s['nmi'][layer].mean():.5f}"])
    return path


def plot_statistics(stats, path, title=None):
    """Two panels (attention distance, NMI) vs layer: per-head dots and the head-mean line per model."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    keys = [('distance', 'mean attention distance (px)'), ('nmi', 'NMI(query; key)')]
    for color, (name, s) in zip(plt.rcParams['axes.prop_cycle'].by_key()['color'], stats.items()):
        depth, heads = s['distance'].shape
        offset = (list(stats).index(name) - (len(stats) - 1) / 2) * 0.12
        for ax, (key, label) in zip(axes, keys):
            values = s[key].numpy()
            layers = torch.arange(depth).numpy()
            ax.scatter((layers[:, None] + offset).repeat(heads, 1), values, s=10, color=color, alpha=0.45)
            ax.plot(layers, values.mean(1), '-o', color=color, markersize=4, label=name)
            ax.set_xlabel('layer (block index)')
            ax.set_ylabel(label)
            ax.set_xticks(layers)
            ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    axes[1].set_ylim(bottom=0)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path
