"""Relative position terms of attention over an (h, w) token grid in raster order.

Two kinds, both learned per block:

- the BEiT / Swin table ``relative_position_bias_table`` [(2h-1)(2w-1) (+3 with a cls token), heads]:
  one bias per head and 2-D offset, added to the attention logits (:func:`relative_position_bias`);
- ViTDet's decomposed positions ``rel_pos_h`` [2h-1, head_dim] and ``rel_pos_w`` [2w-1, head_dim]:
  the logit of query i and key j gains q_i . Rh[r_i - r_j] + q_i . Rw[c_i - c_j]
  (:func:`decomposed_rel_pos_qk`).

Neither builds a dense [N, N] index: at 1024 px (a 64x64 grid) that index alone is 128 MB per block.
"""
import torch


def relative_position_index(height, width, with_cls=False):
    """Index [N, N] into a relative-position table of (2h-1)(2w-1) (+3 with cls) rows.

    Tokens are the ``height x width`` grid in raster order (after one leading cls token when
    ``with_cls``); the entry for (i, j) encodes (row_i - row_j, col_i - col_j). With a cls token the
    three extra rows hold cls->token, token->cls and cls->cls (BEiT's convention). Swin's packed
    windows use it (small windows); :func:`relative_position_bias` needs no index.
    """
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing='ij')
    coords = torch.stack([rows.flatten(), cols.flatten()])  # [2, hw]
    rel = coords[:, :, None] - coords[:, None, :]  # [2, hw, hw]
    index = (rel[0] + height - 1) * (2 * width - 1) + (rel[1] + width - 1)
    if not with_cls:
        return index
    n = (2 * height - 1) * (2 * width - 1)
    full = torch.empty(height * width + 1, height * width + 1, dtype=torch.long)
    full[1:, 1:] = index
    full[0, 1:] = n
    full[1:, 0] = n + 1
    full[0, 0] = n + 2
    return full


def relative_position_bias(table, grid, with_cls=False):
    """Bias [heads, N, N] of a table [(2h-1)(2w-1) (+3), heads] on an (h, w) grid, N = (1 +) h*w.

    Equals ``table[relative_position_index(h, w, with_cls)]`` moved to heads-first, built without the
    index. Seen as a [heads, 2h-1, 2w-1] image and flipped (offset (h-1-dr, w-1-dc) at pixel
    (dr, dc)), the table holds the bias of query (r, c) over all keys in its h x w crop starting at
    (h-1-r, w-1-c). All crops are two ``unfold`` views (no copy); the flip of the query axes that
    puts them in query order makes the result, the only full-size tensor.
    """
    h, w = grid
    heads = table.shape[-1]
    image = table[:(2 * h - 1) * (2 * w - 1)].t().reshape(heads, 2 * h - 1, 2 * w - 1).flip(1, 2)
    crops = image.unfold(1, h, 1).unfold(2, w, 1)  # [heads, h, w, h, w]: crop (a, b)[k, l] = image[a+k, b+l]
    bias = crops.flip(1, 2).reshape(heads, h * w, h * w)  # query (r, c) takes crop (h-1-r, w-1-c)
    if not with_cls:
        return bias
    n = h * w
    full = bias.new_empty(heads, n + 1, n + 1)
    full[:, 1:, 1:] = bias
    extra = table[(2 * h - 1) * (2 * w - 1):]  # [3, heads]: cls->token, token->cls, cls->cls
    full[:, 0, 1:] = extra[0, :, None]
    full[:, 1:, 0] = extra[1, :, None]
    full[:, 0, 0] = extra[2]
    return full


def decomposed_rel_pos_qk(q, k, rel_pos_h, rel_pos_w, grid, scale):
    """ViTDet's decomposed relative positions folded into the query and key: (q', k') [..., N, d+h+w].

    ViTDet's logit of query i = (r_i, c_i) and key j = (r_j, c_j) is
    ``scale * q_i.k_j + q_i.Rh[r_i - r_j + h - 1] + q_i.Rw[c_i - c_j + w - 1]``. With
    ``rel_h[i, r] = q_i.Rh[r_i - r + h - 1]`` (one value per key row) and ``rel_w`` likewise, that is
    the dot product of ``q'_i = [scale * q_i, rel_h[i], rel_w[i]]`` and
    ``k'_j = [k_j, onehot(r_j), onehot(c_j)]``, so attention runs at scale 1 with no [N, N] bias.
    Both are zero-padded to a width divisible by 8, the alignment fused SDPA kernels want.

    q, k: [..., N, d], N = h*w tokens in raster order; rel_pos_h [2h-1, d]; rel_pos_w [2w-1, d].
    """
    h, w = grid
    d = q.shape[-1]
    rows, cols = torch.arange(h, device=q.device), torch.arange(w, device=q.device)
    table_h = rel_pos_h.to(q.dtype)[rows[:, None] - rows[None, :] + h - 1]  # [h (query), h (key), d]
    table_w = rel_pos_w.to(q.dtype)[cols[:, None] - cols[None, :] + w - 1]  # [w, w, d]
    q_grid = q.reshape(*q.shape[:-2], h, w, d)
    rel_h = torch.einsum('...rcd,rkd->...rck', q_grid, table_h).flatten(-3, -2)  # [..., N, h]
    rel_w = torch.einsum('...rcd,ckd->...rck', q_grid, table_w).flatten(-3, -2)  # [..., N, w]
    eye_h, eye_w = torch.eye(h, dtype=k.dtype, device=k.device), torch.eye(w, dtype=k.dtype, device=k.device)
    pad = (-(d + h + w)) % 8
    onehot = torch.cat([eye_h.repeat_interleave(w, 0), eye_w.repeat(h, 1), k.new_zeros(h * w, pad)], dim=1)
    q = torch.cat([q * scale, rel_h, rel_w, q.new_zeros(*q.shape[:-1], pad)], dim=-1)
    k = torch.cat([k, onehot.expand(*k.shape[:-1], h + w + pad)], dim=-1)
    return q, k
