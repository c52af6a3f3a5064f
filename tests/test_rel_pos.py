"""Relative positions of the downstream ViT: the BEiT table's bias built without a dense index, ViTDet's
decomposed positions, and activation checkpointing, each against a naive computation."""
import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from localmim.models import VisionTransformer
from localmim.models.layers import Attention
from localmim.models.vit import WindowBlock
from localmim.models.rel_pos import relative_position_bias

TINY = dict(arch=None, img_size=32, patch_size=4, embed_dim=32, depth=3, num_heads=4, pos_embed='learned')


def randomize(module, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return module


def dense_index_bias(table, h, w, with_cls):
    """BEiT's bias the old way: a dense [N, N] index of (dr + h-1) * (2w-1) + (dc + w-1), cls rows after."""
    n = (2 * h - 1) * (2 * w - 1)
    cells = [(r, c) for r in range(h) for c in range(w)]
    index = [[(ri - rj + h - 1) * (2 * w - 1) + (ci - cj + w - 1) for rj, cj in cells] for ri, ci in cells]
    if with_cls:
        index = [[n + 2] + [n] * len(cells)] + [[n + 1] + row for row in index]
    return table[torch.tensor(index)].permute(2, 0, 1)


@pytest.mark.parametrize('h, w, with_cls', [(1, 1, False), (3, 4, False), (5, 2, True), (7, 7, True), (6, 9, False)])
def test_table_bias_equals_the_dense_index_lookup_exactly(h, w, with_cls):
    table = torch.randn((2 * h - 1) * (2 * w - 1) + 3 * with_cls, 3, requires_grad=True)
    bias = relative_position_bias(table, (h, w), with_cls)
    expected = dense_index_bias(table, h, w, with_cls)
    assert torch.equal(bias, expected)
    upstream = torch.randn_like(bias)
    grad, = torch.autograd.grad(bias, table, upstream)
    expected_grad, = torch.autograd.grad(expected, table, upstream)
    torch.testing.assert_close(grad, expected_grad)


class IntegerTensorSizes(TorchDispatchMode):
    """Records the element count of every int64 tensor an op returns."""

    def __init__(self):
        super().__init__()
        self.sizes = [0]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor) and t.dtype == torch.long:
                self.sizes.append(t.numel())
        return out


@pytest.mark.parametrize('rel_pos_type', ['table', 'decomposed'])
def test_global_attention_builds_no_token_by_token_index(rel_pos_type):
    grid = (12, 12)
    attn = Attention(32, 4, rel_pos_grid=grid, rel_pos_type=rel_pos_type)
    assert not [name for name, _ in attn.named_buffers()]
    x = torch.randn(1, grid[0] * grid[1], 32)
    with IntegerTensorSizes() as recorder:
        attn(x).sum().backward()
    assert max(recorder.sizes) <= grid[0] * grid[1]  # nothing like the old [N, N] index


def naive_decomposed_attention(attn, x, grid):
    """ViTDet's attention on x [B, h*w, C], one query/key pair at a time: softmax over keys of
    q.k / sqrt(d) + q.Rh[r_q - r_k + h - 1] + q.Rw[c_q - c_k + w - 1] (q unscaled in the extra terms)."""
    B, N, C = x.shape
    heads = attn.num_heads
    d = C // heads
    h, w = grid
    q, k, v = attn.qkv(x).view(B, N, 3, heads, d).unbind(2)
    out = torch.zeros(B, N, heads, d)
    for b in range(B):
        for head in range(heads):
            for i in range(N):
                logits = torch.zeros(N)
                for j in range(N):
                    (ri, ci), (rj, cj) = divmod(i, w), divmod(j, w)
                    qi = q[b, i, head]
                    logits[j] = (qi @ k[b, j, head] / math.sqrt(d) + qi @ attn.rel_pos_h[ri - rj + h - 1]
                                 + qi @ attn.rel_pos_w[ci - cj + w - 1])
                out[b, i, head] = logits.softmax(0) @ v[b, :, head]
    return attn.proj(out.reshape(B, N, C))


@pytest.mark.parametrize('grid', [(3, 5), (4, 4)])
def test_decomposed_rel_pos_equals_vitdets_formula(grid):
    attn = randomize(Attention(16, 2, rel_pos_grid=grid, rel_pos_type='decomposed'), seed=1)
    assert attn.rel_pos_h.shape == (2 * grid[0] - 1, 8) and attn.rel_pos_w.shape == (2 * grid[1] - 1, 8)
    x = torch.randn(2, grid[0] * grid[1], 16)
    with torch.no_grad():
        torch.testing.assert_close(attn(x), naive_decomposed_attention(attn, x, grid), atol=1e-5, rtol=0)


def test_decomposed_windowed_backbone_equals_global_one_when_one_window_covers_the_grid():
    cfg = dict(TINY, rel_pos_bias=True, rel_pos_type='decomposed', with_cls_token=False)
    windowed = randomize(VisionTransformer(**cfg, window_size=8, global_blocks=[1]), seed=2).eval()
    plain = VisionTransformer(**cfg).eval()
    plain.load_state_dict(windowed.state_dict(), strict=True)
    assert windowed.blocks[0].attn.rel_pos_h.shape == (15, 8)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(windowed(x)[0], plain(x)[0], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match='cls token'):
        VisionTransformer(**TINY, rel_pos_bias=True, rel_pos_type='decomposed')
    with pytest.raises(ValueError, match="'table' or 'decomposed'"):
        VisionTransformer(**cfg | dict(rel_pos_type='beit'))
    # ViTDet's names; zero-initialised by default and exempt from weight decay like BEiT's table
    fresh = VisionTransformer(**cfg, window_size=3, global_blocks=[1])
    assert {'blocks.1.attn.rel_pos_h', 'blocks.0.attn.rel_pos_w'} <= fresh.no_weight_decay()
    assert all(p.abs().sum() == 0 for _, p in fresh.rel_pos_tables())


@pytest.mark.parametrize('rel_pos_type', ['table', 'decomposed'])
def test_activation_checkpointing_gives_the_same_gradients(rel_pos_type):
    cfg = dict(TINY, rel_pos_bias=True, rel_pos_type=rel_pos_type, with_cls_token=False, window_size=3,
               global_blocks=[1], drop_path_rate=0.2, init_values=0.5)
    plain = randomize(VisionTransformer(**cfg), seed=3).train()
    cp = VisionTransformer(**cfg, with_cp=True).train()
    cp.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 32, 32)
    outputs = []
    for model in (plain, cp):
        torch.manual_seed(0)  # the same drop-path draws
        out = model(x)[0]
        out.square().mean().backward()
        outputs.append(out)
    torch.testing.assert_close(outputs[0], outputs[1])
    for (name, a), b in zip(plain.named_parameters(), cp.parameters()):
        if a.requires_grad:
            torch.testing.assert_close(a.grad, b.grad, msg=name)


def test_decomposed_windows_with_padding_equal_a_loop_over_windows():
    """Padded windows (3x3 on 5x7): each real token attends to the real tokens of its window, with
    ViTDet's terms at window-local positions."""
    grid, window = (5, 7), 3
    block = randomize(WindowBlock(16, 2, window_size=window, rel_pos=True, rel_pos_type='decomposed'), seed=4).eval()
    attn = block.attn
    x = torch.randn(2, grid[0] * grid[1], 16)
    y = block.norm1(x)
    q, k, v = attn.qkv(y).view(2, -1, 3, 2, 8).unbind(2)
    mixed = torch.zeros(2, grid[0] * grid[1], 2, 8)
    cells = [(r, c) for r in range(grid[0]) for c in range(grid[1])]
    for i, (ri, ci) in enumerate(cells):
        keys = [j for j, (rj, cj) in enumerate(cells) if (rj // window, cj // window) == (ri // window, ci // window)]
        for head in range(2):
            qi = q[:, i, head]
            logits = torch.stack([
                (qi * k[:, j, head]).sum(-1) / math.sqrt(8)
                + qi @ attn.rel_pos_h[ri % window - cells[j][0] % window + window - 1]
                + qi @ attn.rel_pos_w[ci % window - cells[j][1] % window + window - 1] for j in keys], -1)
            mixed[:, i, head] = (logits.softmax(-1)[..., None] * v[:, keys, head]).sum(1)
    x_ref = x + attn.proj(mixed.flatten(2))
    x_ref = x_ref + block.mlp(block.norm2(x_ref))
    with torch.no_grad():
        torch.testing.assert_close(block(x, grid), x_ref, atol=1e-5, rtol=0)


def test_vitdet_config_offers_decomposed_positions_and_checkpointing():
    from _dense_helpers import load_config
    from mmdet.registry import MODELS
    cfg = load_config('coco', 'mask-rcnn_localmim-vit-b_simplefpn_lsj-1024-100e_coco.py')
    assert cfg.model.backbone.rel_pos_type == 'table' and cfg.model.backbone.with_cp is False
    cfg.model.backbone.update(rel_pos_type='decomposed', with_cp=True, init_cfg=None)
    backbone = MODELS.build(cfg.model).backbone
    assert backbone.with_cp
    sizes = [tuple(block.attn.rel_pos_h.shape) for block in backbone.blocks]
    assert sizes == [(127, 64) if i in (2, 5, 8, 11) else (27, 64) for i in range(12)]  # 64x64 grid, 14x14 windows
    assert not any(name.endswith('relative_position_bias_table') for name, _ in backbone.named_parameters())
