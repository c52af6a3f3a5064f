"""Swin encoder (sparse, masked tokens dropped) checked against a naive dense Swin and timm."""
import functools
import math
import os.path as osp

import numpy as np
import pytest
import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.structures import BaseDataElement

from localmim.models.localmim import LocalMIM
from localmim.models import swin
from localmim.models.swin import SwinTransformer, resize_rel_pos_table
from localmim.models.targets import PixelTarget
from localmim.registry import build_model

TINY = dict(arch=None, embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4), patch_size=4)


def tiny_swin(img_size, window, **kw):
    torch.manual_seed(0)
    model = SwinTransformer(img_size=img_size, window_size=window, **TINY, **kw)
    with torch.no_grad():  # non-trivial norms and tables
        for name, p in model.named_parameters():
            if p.dim() == 1 or 'relative_position' in name:
                p.add_(torch.randn_like(p) * 0.5)
    return model


# ---- naive reference: full-resolution dense Swin, attention restricted to visible tokens ---------
def naive_window_attention(attn, x, keep, window, shift):
    """Swin (shifted-)window attention on a full grid x [B, H, W, C]; only keys with ``keep``
    [H, W] count. Cyclic shift + window partition + explicit softmax with Swin's region mask."""
    B, H, W, C = x.shape
    heads = attn.num_heads
    x = torch.roll(x, (-shift, -shift), (1, 2))
    keep = torch.roll(keep, (-shift, -shift), (0, 1))
    region = torch.zeros(H, W)
    if shift:
        label = 0
        for rows in (slice(0, H - window), slice(H - window, H - shift), slice(H - shift, H)):
            for cols in (slice(0, W - window), slice(W - window, W - shift), slice(W - shift, W)):
                region[rows, cols] = label
                label += 1

    def partition(t):  # [..., H, W, *] -> [..., nW, window*window, *]
        lead = t.shape[:-3] if t.dim() == 4 else ()
        t = t.reshape(*lead, H // window, window, W // window, window, *t.shape[len(lead) + 2:])
        t = t.movedim(len(lead) + 1, len(lead) + 2)
        return t.reshape(*lead, (H // window) * (W // window), window * window, *t.shape[len(lead) + 4:])

    xw = partition(x)  # [B, nW, n, C]
    kw, rw = partition(keep[..., None])[..., 0], partition(region[..., None])[..., 0]  # [nW, n]
    q, k, v = attn.qkv(xw).unflatten(-1, (3, heads, C // heads)).unbind(-3)  # [B, nW, n, heads, d]
    logits = torch.einsum('bwihd,bwjhd->bwhij', q, k) * (C // heads) ** -0.5
    r, c = torch.meshgrid(torch.arange(window), torch.arange(window), indexing='ij')
    r, c = r.flatten(), c.flatten()
    index = (r[:, None] - r[None] + window - 1) * (2 * window - 1) + (c[:, None] - c[None] + window - 1)
    logits = logits + attn.relative_position_bias_table[index].permute(2, 0, 1)
    allowed = (rw[:, :, None] == rw[:, None, :]) & kw[:, None, :]  # [nW, n, n]
    logits = logits.masked_fill(~allowed[None, :, None], -torch.inf)
    out = torch.einsum('bwhij,bwjhd->bwihd', logits.softmax(-1).nan_to_num(), v).flatten(-2)
    out = attn.proj(out)
    out = out.view(B, H // window, W // window, window, window, C).movedim(2, 3).reshape(B, H, W, C)
    return torch.roll(out, (shift, shift), (1, 2))


def naive_swin_taps(model, images, keep):
    """Taps of ``model`` (stage outputs after the next merging; the last stage's output) computed
    densely on the full grid; returns the visible tokens of each, raster order."""
    B = images.shape[0]
    x = model.patch_embed(images)
    H = W = images.shape[-1] // model.patch_size
    x = x.view(B, H, W, -1)
    taps = []
    for i, stage in enumerate(model.layers):
        if i > 0:
            merged = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
            x = stage.downsample.reduction(stage.downsample.norm(merged))
            keep = keep[0::2, 0::2]
            taps.append(x[:, keep])
        H, window = x.shape[1], stage.window
        for j, block in enumerate(stage.blocks):
            shift = window // 2 if j % 2 and H > window else 0
            x = x + naive_window_attention(block.attn, block.norm1(x), keep, window, shift)
            x = x + block.mlp(block.norm2(x))
    taps.append(x[:, keep])
    return taps


@pytest.mark.parametrize('img_size,window,units', [
    (96, 3, [[0, 1, 0], [1, 0, 0], [0, 1, 1]]),  # 24/12/6/3 grids, shifts in stages 0-2
    (64, 2, [[1, 0], [0, 1]]),  # 16/8/4/2 grids
])
def test_sparse_equals_naive_dense_on_visible_tokens(img_size, window, units):
    check_against_naive_dense(tiny_swin(img_size, window), img_size, units)


def test_mask_beyond_the_static_bins_falls_back_to_worst_case_bins(monkeypatch):
    """Static bins fitted to a single sampled placement: a mask that needs more bins gets the
    worst-case layout (with a warning) and stays exact."""
    monkeypatch.setattr(swin, 'PLACEMENTS', 1)
    model = tiny_swin(96, 3)
    with pytest.warns(UserWarning, match='worst-case'):
        check_against_naive_dense(model, 96, [[1, 1, 1], [0, 0, 0], [1, 0, 1]])


def check_against_naive_dense(model, img_size, units):
    """Taps and parameter gradients of the sparse model with ``units`` [h, w] visible (1) equal
    the naive dense Swin's on the visible tokens."""
    torch.manual_seed(1)
    images = torch.randn(2, 3, img_size, img_size)
    visible = torch.tensor(units, dtype=torch.bool)
    mask = (~visible)[None].expand(2, -1, -1)
    keep = visible.repeat_interleave(img_size // 4 // visible.shape[0], 0).repeat_interleave(
        img_size // 4 // visible.shape[1], 1)
    got = model.forward_intermediates(images, [0, 1, 2, 3], mask=mask)
    ref = naive_swin_taps(model, images, keep)
    for stage, (g, r) in enumerate(zip(got, ref)):
        assert g.shape == r.shape, stage
        torch.testing.assert_close(g, r, atol=2e-5, rtol=1e-4)
    # gradients of every parameter agree as well (packing/gathers are differentiated correctly)
    weights = [torch.randn_like(r) for r in ref]
    names, params = zip(*[(n, p) for n, p in model.named_parameters() if not n.startswith('norm.')])
    grads_sparse = torch.autograd.grad(sum((g * w).sum() for g, w in zip(got, weights)), params)
    grads_naive = torch.autograd.grad(sum((r * w).sum() for r, w in zip(ref, weights)), params)
    for name, a, b in zip(names, grads_sparse, grads_naive):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-3, msg=name)


def test_masked_pixels_do_not_matter_and_bad_masks_fail():
    model = tiny_swin(96, 3).eval()
    mask = torch.tensor([[1, 0, 1], [0, 1, 1], [1, 1, 0]], dtype=torch.bool)[None].expand(2, -1, -1)
    images = torch.randn(2, 3, 96, 96)
    changed = images.clone()
    pixel_mask = mask[0].repeat_interleave(32, 0).repeat_interleave(32, 1)
    changed[:, :, pixel_mask] = torch.randn_like(changed[:, :, pixel_mask])
    with torch.no_grad():
        a = model.forward_intermediates(images, [0, 1, 2, 3], mask=mask)
        b = model.forward_intermediates(changed, [0, 1, 2, 3], mask=mask)
    assert [t.shape[1] for t in a] == [3 * 16, 3 * 4, 3, 3]
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y)
    per_sample = mask.clone()
    per_sample[1] = ~per_sample[1]
    with pytest.raises(ValueError, match='ONE mask per batch'):
        model.forward_intermediates(images, [0], mask=per_sample)
    fine = torch.zeros(2, 6, 6, dtype=torch.bool)  # 16 px units: split by the last merging
    fine[:, 0, 0] = True
    with pytest.raises(ValueError, match='splits a 2x2 patch-merging group before stage 3'):
        model.forward_intermediates(images, [3], mask=fine)


def test_feature_info_and_taps_match_method_for_swin_b():
    with torch.device('meta'):  # structure only
        model = SwinTransformer(arch='base', img_size=224)
        large = SwinTransformer(arch='large', img_size=224, window_size=14)
    assert model.feature_info([0, 1, 2, 3]) == [(256, 8), (512, 16), (1024, 32), (1024, 32)]
    assert [layer.window for layer in model.layers] == [7, 7, 7, 7]
    assert sum(p.numel() for p in model.parameters()) == 86_743_224  # as timm swin_base_patch4_window7_224 without head
    assert model.get_layer_depth('layers.3.blocks.1.mlp.fc1.weight')[1] == 26
    assert model.get_layer_depth('patch_embed.proj.weight')[0] == 0
    assert model.get_layer_depth('layers.0.blocks.0.attn.qkv.weight')[0] == 1
    assert model.get_layer_depth('layers.2.blocks.0.norm1.weight')[0] == 5
    assert model.get_layer_depth('layers.2.downsample.reduction.weight')[0] == 4  # = last block of stage 1
    assert model.get_layer_depth('layers.3.blocks.1.attn.proj.bias')[0] == 24
    assert model.get_layer_depth('norm.weight')[0] == 25
    assert len(model.no_weight_decay()) == 24
    assert all(n.endswith('attn.relative_position_bias_table') for n in model.no_weight_decay())
    assert [layer.window for layer in large.layers] == [14, 14, 14, 7]  # clipped to the 7x7 stage


# ---- without a mask it is timm's Swin -----------------------------------------------------------
def test_unmasked_equals_timm_swin():
    kw = dict(img_size=96, patch_size=4, embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4), window_size=3)
    ours = tiny_swin(96, 3, out_indices=(0, 1, 2, 3)).eval()
    ref = timm.models.swin_transformer.SwinTransformer(
        num_classes=0, norm_layer=functools.partial(nn.LayerNorm, eps=1e-6), **kw).eval()
    missing, unexpected = ref.load_state_dict(ours.state_dict(), strict=False)
    assert unexpected == [f'norm{i}.{p}' for i in range(3) for p in ('weight', 'bias')] and missing == []
    images = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        maps = ours(images)
        stages = ref.forward_intermediates(images, indices=4, norm=False, intermediates_only=True)
        final = ref.forward_features(images)
    for i in range(3):
        norm = getattr(ours, f'norm{i}')
        expected = F.layer_norm(stages[i].permute(0, 2, 3, 1), norm.normalized_shape, norm.weight, norm.bias, 1e-6)
        torch.testing.assert_close(maps[i], expected.permute(0, 3, 1, 2), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(maps[3], final.permute(0, 3, 1, 2), atol=1e-5, rtol=1e-4)


def test_odd_grid_patch_merging_matches_timm():
    from timm.models.swin_transformer import PatchMerging as TimmMerging

    from localmim.models.swin import PatchMerging, merge_plan
    torch.manual_seed(0)
    ours, ref = PatchMerging(8, 16), TimmMerging(8, 16, norm_layer=functools.partial(nn.LayerNorm, eps=1e-6))
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(2, 5, 7, 8)  # odd grid: timm zero-pads the bottom row and right column
    rows, cols = np.divmod(np.arange(5 * 7), 7)
    _, _, index = merge_plan(rows, cols, (5, 7), 1)
    with torch.no_grad():
        torch.testing.assert_close(ours(x.flatten(1, 2), torch.from_numpy(index), True), ref(x).flatten(1, 2))


def test_rel_pos_table_resized_on_load_like_timm():
    from timm.layers.pos_embed_rel import resize_rel_pos_bias_table_simple
    small, big = tiny_swin(96, 3), SwinTransformer(img_size=96, window_size=4, **TINY)
    state = small.state_dict()
    big.load_state_dict(state)
    key = 'layers.0.blocks.1.attn.relative_position_bias_table'
    expected = resize_rel_pos_bias_table_simple(state[key], (4, 4), (49, 1))
    torch.testing.assert_close(big.state_dict()[key], expected)
    torch.testing.assert_close(resize_rel_pos_table(state[key], 3), state[key])


def test_with_cp_and_drop_path_train_and_match_in_eval():
    plain = tiny_swin(64, 2)
    cp = tiny_swin(64, 2, with_cp=True, drop_path_rate=0.2)
    images = torch.randn(2, 3, 64, 64)
    mask = torch.tensor([[1, 0], [0, 0]], dtype=torch.bool)[None].expand(2, -1, -1)
    plain.train(), cp.train()
    for model in (plain, cp):
        torch.manual_seed(3)  # drop path draws
        sum(t.sum() for t in model.forward_intermediates(images, [0, 3], mask=mask)).backward()
    assert all(p.grad is not None for n, p in cp.named_parameters() if not n.startswith('norm.'))
    plain.eval(), cp.eval()
    with torch.no_grad():  # drop path off: identical weights give identical outputs
        torch.testing.assert_close(plain.forward_intermediates(images, [0, 3], mask=mask),
                                   cp.forward_intermediates(images, [0, 3], mask=mask))


# ---- LocalMIM with a Swin encoder ---------------------------------------------------------------
def tiny_localmim(target):
    torch.manual_seed(0)
    return LocalMIM(
        encoder=dict(type='SwinTransformer', img_size=96, window_size=3, **TINY),
        taps=[0, 1, 2, 3], target=target,
        decoder=dict(dims=(16, 32, 32, 32), depth=1, num_heads=4),
        mask_ratio=0.75, mask_unit=32, mask_per_sample=False)


def test_localmim_swin_loss_decreases_on_a_fixed_batch():
    model = tiny_localmim(dict(type='HOGTarget', nbins=18, cell_sizes=(8, 16, 32, 32), bias='shared'))
    torch.manual_seed(0)
    images = torch.randn(2, 3, 96, 96)
    mask = torch.tensor([[1, 0, 1], [1, 1, 0], [1, 1, 1]], dtype=torch.bool)
    samples = [BaseDataElement(mask=mask) for _ in range(2)]
    losses = model.loss(images, samples)
    assert list(losses) == ['loss_8px', 'loss_16px', 'loss_32px_2', 'loss_32px_3']
    random = model.loss(images)  # the algorithm's own mask: 2 of 9 units visible, shared by the batch
    assert all(torch.isfinite(v) for v in random.values())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    history = []
    for _ in range(6):
        loss = sum(model.loss(images, samples).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(loss.item())
    assert history[-1] < 0.8 * history[0], history


def test_pixel_targets_for_swin_cells():
    images = torch.randn(2, 3, 64, 64)
    maps = PixelTarget(cell_sizes=(8, 16, 32, 32))(images)
    assert [tuple(m.shape) for m in maps] == [(2, 192, 8, 8), (2, 768, 4, 4), (2, 3072, 2, 2), (2, 3072, 2, 2)]
    array = images.double().numpy()
    for cell, got in zip((8, 16, 32), maps):
        for b, i, j in [(0, 0, 0), (1, 1, 0), (1, 0, 1)]:
            patch = array[b, :, i * cell:(i + 1) * cell, j * cell:(j + 1) * cell]
            values = patch.transpose(1, 2, 0).reshape(-1)  # (row, col, colour)
            expected = (values - values.mean()) / np.sqrt(values.var(ddof=1) + 1e-6)
            np.testing.assert_allclose(got[b, :, i, j].numpy(), expected, atol=1e-4)


# ---- configs -------------------------------------------------------------------------------------
CONFIGS = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'mm_configs', 'pretrain')


@pytest.mark.parametrize('name,arch,window,target_dims', [
    ('swin_localmim-b_hog_400e_in1k.py', 'base', 7, [54] * 4),
    ('swin_localmim-b_pixel_400e_in1k.py', 'base', 7, [192, 768, 3072, 3072]),
    ('swin_localmim-l_hog_800e_in1k.py', 'large', 14, [54] * 4),
    ('swin_localmim-b_global-only_hog_400e_in1k.py', 'base', 7, [54]),
    ('swin_localmim-b_global-only_pixel_400e_in1k.py', 'base', 7, [3072]),
])
def test_release_recipe_configs(name, arch, window, target_dims):
    cfg = Config.fromfile(osp.join(CONFIGS, name))
    with torch.device('meta'):  # structure only
        model = build_model(cfg.model)
    assert model.encoder.dims == {'base': [128, 256, 512, 1024], 'large': [192, 384, 768, 1536]}[arch]
    assert [layer.window for layer in model.encoder.layers] == [window] * 3 + [7]
    if len(target_dims) == 4:
        assert model.taps == [0, 1, 2, 3] and model.target.cell_sizes == (8, 16, 32, 32)
        assert [d.grid_size for d in model.decoders] == [(28, 28), (14, 14), (7, 7), (7, 7)]
        assert [d.embed.out_features for d in model.decoders] == [64, 128, 128, 128]
    else:  # global-only: the last stage alone, at the 32 px scale, same decoder
        assert model.taps == [3] and model.target.cell_sizes == (32,)
        assert [d.grid_size for d in model.decoders] == [(7, 7)] and model.decoders[0].embed.out_features == 128
    # the release's output layer: a Linear on the tokens
    assert all(isinstance(d.pred, nn.Linear) for d in model.decoders)
    assert [d.pred.out_features for d in model.decoders] == target_dims
    if 'hog' in name:  # the release's four HOG modules: one frozen bias per scale
        assert model.target.nbins == 18 and tuple(model.target.bias.shape) == (len(target_dims), 2)
    assert model.mask_unit == 32 and not model.mask_per_sample and model.mask_ratio == 0.75
    assert isinstance(model.encoder.norm, nn.Identity)  # tap norms instead of a final norm
    assert cfg.optim_wrapper.optimizer.betas == (0.9, 0.95) and cfg.auto_scale_lr.base_batch_size == 256
    assert cfg.param_scheduler[1].eta_min == 0 and cfg.param_scheduler[0].end == 40


def test_tiny_global_only_config_predicts_one_coarse_scale():
    cfg = Config.fromfile(osp.join(CONFIGS, 'swin_localmim-tiny_global-only_fmnist.py'))
    model = build_model(cfg.model)
    losses = model.loss(torch.randn(2, 3, 64, 64))
    assert list(losses) == ['loss_32px'] and torch.isfinite(losses['loss_32px'])
    assert model.taps == [3] and tuple(model.target.bias.shape) == (1, 2)


def test_swin_localmim_init_is_the_releases():
    """xavier-uniform Linear weights (decoder outputs included) and patch-embedding conv as a
    [dim, C*p*p] matrix, zero Linear biases, LayerNorm 1/0 (the old init: truncated normal 0.02)."""
    torch.manual_seed(0)
    cfg = Config.fromfile(osp.join(CONFIGS, 'swin_localmim-tiny_fmnist.py'))
    model = build_model(cfg.model)

    def check_xavier(w, fan_in, fan_out, name):
        bound = math.sqrt(6 / (fan_in + fan_out))
        assert w.abs().max() <= bound, name
        assert abs(w.std().item() - bound / math.sqrt(3)) < 0.1 * bound / math.sqrt(3), name

    linears = {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    assert {f'decoders.{i}.pred' for i in range(4)} <= set(linears)
    for name, m in linears.items():
        check_xavier(m.weight.detach(), m.in_features, m.out_features, name)
        assert m.bias is None or not m.bias.any(), name
    proj = model.encoder.patch_embed.proj.weight.detach()
    check_xavier(proj, proj[0].numel(), proj.shape[0], 'patch_embed.proj')
    for name, m in model.named_modules():
        if isinstance(m, nn.LayerNorm):
            assert (m.weight == 1).all() and not m.bias.any(), name


@pytest.mark.skipif(not osp.isdir('/usr/share/datasets/fashion-mnist'), reason='Fashion-MNIST not installed')
def test_tiny_fmnist_config_trains_with_the_runner(tmp_path):
    from localmim.engine.launch import build_runner
    cfg = Config.fromfile(osp.join(CONFIGS, 'swin_localmim-tiny_fmnist.py'))
    cfg.work_dir = str(tmp_path)
    cfg.train_dataloader.update(batch_size=4, num_workers=0, persistent_workers=False)
    cfg.train_dataloader.dataset.num_samples = 8
    cfg.train_cfg.max_epochs = 1
    cfg.default_hooks.logger.interval = 1
    runner = build_runner(cfg)
    runner.train()
    assert runner.iter == 2
    logged = runner.message_hub.log_scalars
    assert all(torch.isfinite(torch.tensor(logged[f'train/{k}'].current()))
               for k in ('loss_8px', 'loss_16px', 'loss_32px_2', 'loss_32px_3'))
