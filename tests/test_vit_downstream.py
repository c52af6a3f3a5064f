"""Downstream ViT backbone, feature pyramid and checkpoint conversion, checked against timm,
naive loops and the pretraining encoder."""
import math
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from timm.layers import resample_abs_pos_embed
from timm.models.vision_transformer import VisionTransformer as TimmViT

from localmim.conversion import convert_localmim_pretrain, convert_release_vit, convert_timm_vit, export_timm_vit
from localmim.models import ImageClassifier, LocalMIM, SimpleFeaturePyramid, VisionTransformer
from localmim.models.layers import relative_position_index
from localmim.models.vit import WindowBlock, resample_pos_embed

TINY = dict(arch=None, img_size=32, patch_size=4, embed_dim=32, depth=2, num_heads=4)
TOL = 1e-5


def timm_tiny(**kwargs):
    return TimmViT(img_size=32, patch_size=4, embed_dim=32, depth=2, num_heads=4, **kwargs).eval()


def randomize(module, seed=0):
    """Random values in every parameter (so zero-initialised tables/biases matter too)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return module


def tokens_of(feature_map):
    return feature_map.flatten(2).transpose(1, 2)


def load_via_init_cfg(cfg, state_dict, tmp_path):
    """Build a backbone whose init_cfg loads ``{'state_dict': state_dict}`` with prefix 'backbone.'."""
    path = tmp_path / 'converted.pth'
    torch.save({'state_dict': state_dict}, path)
    model = VisionTransformer(**cfg, init_cfg=dict(type='Pretrained', checkpoint=str(path), prefix='backbone.'))
    model.init_weights()
    return model.eval()


def test_backbone_equals_timm_both_ways(tmp_path):
    ours = randomize(VisionTransformer(**TINY, pos_embed='learned', final_norm=True)).eval()
    x = torch.randn(2, 3, 32, 32)
    # ours -> timm
    exported, report = export_timm_vit({'backbone.' + k: v for k, v in ours.state_dict().items()})
    assert report['missing'] == [] and not report['dropped']
    save_file(exported, tmp_path / 'vit.safetensors')
    theirs = timm_tiny(num_classes=0)
    theirs.load_state_dict(load_file(tmp_path / 'vit.safetensors'), strict=True)
    torch.testing.assert_close(tokens_of(ours(x)[0]), theirs.forward_features(x)[:, 1:], atol=TOL, rtol=0)
    # timm -> ours, through mmengine's Pretrained init with prefix
    theirs = randomize(timm_tiny(num_classes=0), seed=1)
    converted, report = convert_timm_vit(theirs.state_dict())
    assert report['missing'] == [] and report['dropped'] == []
    ours = load_via_init_cfg(dict(TINY, pos_embed='learned', final_norm=True), converted, tmp_path)
    torch.testing.assert_close(tokens_of(ours(x)[0]), theirs.forward_features(x)[:, 1:], atol=TOL, rtol=0)
    cls = VisionTransformer(**TINY, pos_embed='learned', out_type='cls_token')
    cls.load_state_dict({k[9:]: v for k, v in converted.items()})
    torch.testing.assert_close(cls.eval()(x)[0], theirs.forward_features(x)[:, 0], atol=TOL, rtol=0)


def test_classifier_equals_timm_global_pool_both_ways(tmp_path):
    theirs = randomize(timm_tiny(num_classes=10, global_pool='avg', fc_norm=True), seed=2)
    x = torch.randn(3, 3, 32, 32)
    converted, report = convert_timm_vit({'model': theirs.state_dict()})  # MAE's {'model': sd}
    assert {'fc_norm.weight', 'head.weight'} <= set(converted) and report['dropped'] == []
    ours = ImageClassifier(dict(type='VisionTransformer', **TINY, pos_embed='learned', final_norm=False),
                           num_classes=10, fc_norm=True).eval()
    ours.load_state_dict(converted, strict=True)
    torch.testing.assert_close(ours(x), theirs(x), atol=TOL, rtol=0)
    back, _ = export_timm_vit(ours.state_dict())
    fresh = timm_tiny(num_classes=10, global_pool='avg', fc_norm=True)
    fresh.load_state_dict(back, strict=True)
    torch.testing.assert_close(fresh(x), theirs(x), atol=TOL, rtol=0)


def test_pos_embed_resample_equals_timm():
    table = torch.randn(1, 1 + 8 * 8, 16)
    for new in [(12, 6), (5, 5), (8, 8), (16, 11)]:
        ours = resample_pos_embed(table, (8, 8), new)
        ref = resample_abs_pos_embed(table, list(new), old_size=[8, 8], num_prefix_tokens=1)
        torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)


def test_non_square_input_equals_timm_dynamic_size():
    ours = randomize(VisionTransformer(**TINY, pos_embed='learned', final_norm=True), seed=3).eval()
    theirs = timm_tiny(num_classes=0, dynamic_img_size=True)
    theirs.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(2, 3, 48, 24)
    out = ours(x)[0]
    assert out.shape == (2, 32, 12, 6)
    torch.testing.assert_close(tokens_of(out), theirs.forward_features(x)[:, 1:], atol=TOL, rtol=0)
    # the fixed sin-cos table is interpolated as stored, not recomputed
    fixed = VisionTransformer(**TINY, pos_embed='sincos')
    tokens = fixed.embed(torch.zeros(1, 3, 48, 24))  # a black image: patch embedding = conv bias
    expected = resample_abs_pos_embed(fixed.pos_embed.data, [12, 6], old_size=[8, 8])
    torch.testing.assert_close(tokens[:, 1:] - fixed.patch_embed.proj.bias, expected[:, 1:], atol=1e-6, rtol=0)


def test_checkpoint_of_another_grid_is_resampled_on_load(tmp_path):
    small = randomize(VisionTransformer(**TINY, pos_embed='learned'), seed=4).eval()
    converted, _ = convert_timm_vit(small.state_dict())
    large = load_via_init_cfg(dict(TINY, img_size=48, pos_embed='learned'), converted, tmp_path)
    torch.testing.assert_close(large.pos_embed.data, resample_abs_pos_embed(small.pos_embed.data, [12, 12]))
    x = torch.randn(1, 3, 48, 48)
    torch.testing.assert_close(large(x)[0], small(x)[0], atol=TOL, rtol=0)


def naive_window_block(block, x, grid, window):
    """Each real token attends to the real tokens of its window; loops over windows and heads."""
    B, N, C = x.shape
    h, w = grid
    heads = block.attn.num_heads
    hd = C // heads
    y = block.norm1(x)
    qkv = block.attn.qkv(y).view(B, N, 3, heads, hd)
    table = block.attn.relative_position_bias_table
    index = relative_position_index(window, window)
    attn_out = torch.zeros(B, N, C)
    for wr in range(math.ceil(h / window)):
        for wc in range(math.ceil(w / window)):
            cells = [(r, c) for r in range(wr * window, min(h, (wr + 1) * window))
                     for c in range(wc * window, min(w, (wc + 1) * window))]
            tok = torch.tensor([r * w + c for r, c in cells])
            local = torch.tensor([(r - wr * window) * window + (c - wc * window) for r, c in cells])
            for hh in range(heads):
                q, k, v = (qkv[:, tok, i, hh] for i in range(3))
                logits = q @ k.transpose(1, 2) / math.sqrt(hd) + table[index[local][:, local], hh]
                attn_out[:, tok, hh * hd:(hh + 1) * hd] = logits.softmax(-1) @ v
    x = x + block.ls1(block.attn.proj(attn_out))
    return x + block.ls2(block.mlp(block.norm2(x)))


@pytest.mark.parametrize('grid', [(5, 7), (6, 6)])
def test_window_block_equals_naive(grid):
    block = randomize(WindowBlock(16, 2, window_size=3, rel_pos=True, init_values=0.5), seed=5).eval()
    x = torch.randn(2, grid[0] * grid[1], 16)
    torch.testing.assert_close(block(x, grid), naive_window_block(block, x, grid, 3), atol=TOL, rtol=0)


def test_one_window_with_global_blocks_equals_global_attention():
    """A window covering the whole grid is global attention: windowed and plain backbones agree."""
    cfg = dict(TINY, pos_embed='learned', rel_pos_bias=True, with_cls_token=False, depth=3)
    windowed = randomize(VisionTransformer(**cfg, window_size=8, global_blocks=[1], out_indices=(0, 2)), 6).eval()
    plain = VisionTransformer(**cfg, out_indices=(0, 2)).eval()
    plain.load_state_dict(windowed.state_dict(), strict=True)
    assert [type(b).__name__ for b in windowed.blocks] == ['WindowBlock', 'Block', 'WindowBlock']
    x = torch.randn(2, 3, 32, 32)
    for a, b in zip(windowed(x), plain(x)):
        torch.testing.assert_close(a, b, atol=TOL, rtol=0)
    # padded windows (window 3 on 8x8) still run, and with_cp gives the same values and gradients
    vitdet = randomize(VisionTransformer(**cfg, window_size=3, global_blocks=[1], with_cp=False), 7).train()
    cp = VisionTransformer(**cfg, window_size=3, global_blocks=[1], with_cp=True).train()
    cp.load_state_dict(vitdet.state_dict())
    out_a, out_b = vitdet(x)[0], cp(x)[0]
    torch.testing.assert_close(out_a, out_b)
    out_a.square().sum().backward()
    out_b.square().sum().backward()
    torch.testing.assert_close(vitdet.blocks[0].attn.qkv.weight.grad, cp.blocks[0].attn.qkv.weight.grad)
    with pytest.raises(ValueError, match='built for a 8x8 grid'):
        vitdet(torch.randn(1, 3, 48, 48))


def test_pretraining_encoder_equals_backbone_after_conversion(tmp_path):
    taps = [0, 1, 2, 3]
    model = LocalMIM(encoder=dict(type='VisionTransformer', **dict(TINY, depth=4), final_norm=False),
                     taps=taps, target=dict(type='HOGTarget', nbins=9, cell_sizes=(1, 2, 4, 8)),
                     decoder=dict(dims=32, num_heads=4))
    randomize(model.tap_norms, seed=8)
    randomize(model.encoder.blocks, seed=9)
    torch.save({'state_dict': model.state_dict(), 'meta': dict(epoch=1)}, tmp_path / 'pretrain.pth')
    checkpoint = torch.load(tmp_path / 'pretrain.pth', weights_only=True)
    converted, report = convert_localmim_pretrain(checkpoint)
    assert report['converted'] == ['tap_norms.3.weight -> backbone.norm.weight',
                                   'tap_norms.3.bias -> backbone.norm.bias']
    assert report['missing'] == [] and any(k.startswith('decoders.') for k in report['dropped'])
    assert 'tap_norms.0.weight' in report['dropped']
    backbone = load_via_init_cfg(dict(TINY, depth=4, pos_embed='learned', out_indices=taps, final_norm=True),
                                 converted, tmp_path)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        feats = model.encoder.eval().forward_intermediates(x, taps)
        maps = backbone(x)
    for i, (feat, fmap) in enumerate(zip(feats, maps)):
        expected = model.tap_norms[3](feat) if i == 3 else feat  # the final norm is the last tap's
        torch.testing.assert_close(tokens_of(fmap), expected[:, 1:], atol=TOL, rtol=0)


def test_release_checkpoint_conversion():
    source = randomize(VisionTransformer(**TINY, pos_embed='learned', final_norm=False), seed=10).state_dict()
    release = dict(source)
    for i in range(4):
        release[f'norm.{i}.weight'], release[f'norm.{i}.bias'] = torch.full((32,), i + 1.), torch.full((32,), -i - 1.)
        release[f'decoder.{i}.embed.weight'] = torch.randn(8, 32)
        release[f'hog_enc.{i}.conv.weight'] = torch.randn(3, 1, 3, 3)
    converted, report = convert_release_vit({'model': release, 'epoch': 5})
    assert report['converted'] == ['norm.3.weight -> backbone.norm.weight', 'norm.3.bias -> backbone.norm.bias']
    assert sorted(report['dropped']) == sorted([f'norm.{i}.{p}' for i in range(3) for p in ('weight', 'bias')]
                                               + [f'decoder.{i}.embed.weight' for i in range(4)]
                                               + [f'hog_enc.{i}.conv.weight' for i in range(4)])
    assert report['missing'] == [] and len(report['loaded']) == len(source)
    backbone = VisionTransformer(**TINY, pos_embed='learned', final_norm=True)
    backbone.load_state_dict({k[len('backbone.'):]: v for k, v in converted.items()}, strict=True)
    assert torch.equal(backbone.norm.weight, torch.full((32,), 4.))
    assert torch.equal(backbone.blocks[1].mlp.fc2.weight, source['blocks.1.mlp.fc2.weight'])


def test_conversion_errors_name_the_problem():
    with pytest.raises(ValueError, match='patch_embed.proj.weight'):
        convert_timm_vit({'model': {'encoder.layers.0.blocks.0.attn.qkv.weight': torch.zeros(3, 1)}})
    sd = timm_tiny(num_classes=0, qk_norm=True).state_dict()
    with pytest.raises(ValueError, match='blocks.0.attn.q_norm.weight'):
        convert_timm_vit(sd)
    with pytest.raises(ValueError, match='per-tap'):
        convert_release_vit(timm_tiny(num_classes=0).state_dict())
    rel = VisionTransformer(**TINY, rel_pos_bias=True).state_dict()
    with pytest.raises(ValueError, match='relative position bias'):
        export_timm_vit(rel)
    truncated = timm_tiny(num_classes=0).state_dict()
    del truncated['blocks.1.mlp.fc1.weight']
    assert convert_timm_vit(truncated)[1]['missing'] == ['blocks.1.mlp.fc1.weight']


def test_simple_feature_pyramid_levels():
    x = torch.randn(2, 8, 4, 6)
    neck = randomize(SimpleFeaturePyramid(8, scales=(4, 2, 1, 0.5)), seed=11)
    x4, x2, x1, half = neck((x,))
    assert [t.shape[1:] for t in (x4, x2, x1, half)] == [(2, 16, 24), (4, 8, 12), (8, 4, 6), (8, 2, 3)]
    torch.testing.assert_close(x1, x)
    torch.testing.assert_close(half, x.view(2, 8, 2, 2, 3, 2).amax(dim=(3, 5)))
    deconv = neck.levels[1][0]  # a 2x2 stride-2 deconvolution: every input cell paints a 2x2 block
    naive = torch.einsum('bchw,coij->bohiwj', x, deconv.weight).reshape(2, 4, 8, 12) + deconv.bias[:, None, None]
    torch.testing.assert_close(x2, naive, atol=TOL, rtol=0)
    # four inputs (segmentation taps), D channels kept, avg pool; ViTDet style with output convs + p6
    seg = SimpleFeaturePyramid(8, keep_channels=True, pool='avg', norm_cfg=dict(type='BN'))
    maps = [torch.randn(2, 8, 4, 6) for _ in range(4)]
    outs = seg(maps)
    assert seg.level_channels == [8, 8, 8, 8] and outs[0].shape == (2, 8, 16, 24)
    torch.testing.assert_close(outs[2], maps[2])
    torch.testing.assert_close(outs[3], F.avg_pool2d(maps[3], 2))
    det = SimpleFeaturePyramid(8, out_channels=6, num_outs=5)
    outs = det((x,))
    assert [o.shape[-2:] for o in outs] == [(16, 24), (8, 12), (4, 6), (2, 3), (1, 2)]
    torch.testing.assert_close(outs[4], outs[3][..., ::2, ::2])
    with pytest.raises(ValueError, match='1 or 4 input maps'):
        det([x, x])
    # strides 4-32 from a stride-8 map (the canvas UperNet): x0.25 is a 4x4 max over each block
    quarter = SimpleFeaturePyramid(8, scales=(2, 1, 0.5, 0.25), keep_channels=True)
    x = torch.randn(2, 8, 8, 12)
    outs = quarter((x,))
    assert [o.shape[-2:] for o in outs] == [(16, 24), (8, 12), (4, 6), (2, 3)]
    torch.testing.assert_close(outs[3], x.view(2, 8, 2, 4, 3, 4).amax(dim=(3, 5)))
    with pytest.raises(ValueError, match='one of 4, 2, 1, 0.5, 0.25; got 0.125'):
        SimpleFeaturePyramid(8, scales=(0.125,))


def test_mmseg_upernet_on_vit_taps_and_pyramid():
    """The release's segmentation layout with mmseg's real UperNet: taps -> 4 levels -> UPerHead."""
    from mmengine.registry import DefaultScope
    from mmseg.registry import MODELS as SEG_MODELS
    from mmseg.structures import SegDataSample
    from mmengine.config import ConfigDict
    from mmengine.structures import PixelData
    cfg = dict(
        type='EncoderDecoder',
        data_preprocessor=dict(type='SegDataPreProcessor', mean=[0., 0., 0.], std=[1., 1., 1.], size=(64, 64)),
        backbone=dict(type='localmim.VisionTransformer', **dict(TINY, img_size=64, patch_size=8, depth=4),
                      pos_embed='learned', out_indices=(0, 1, 2, 3), final_norm=False, rel_pos_bias=True,
                      init_values=0.1, drop_path_rate=0.1),
        neck=dict(type='localmim.SimpleFeaturePyramid', in_channels=32, keep_channels=True,
                  norm_cfg=dict(type='BN')),
        decode_head=dict(type='UPerHead', in_channels=[32] * 4, in_index=[0, 1, 2, 3], channels=16,
                         num_classes=5, norm_cfg=dict(type='BN'), align_corners=False,
                         loss_decode=dict(type='CrossEntropyLoss', loss_weight=1.0)),
        auxiliary_head=dict(type='FCNHead', in_channels=32, in_index=2, channels=16, num_convs=1,
                            num_classes=5, norm_cfg=dict(type='BN'), align_corners=False,
                            loss_decode=dict(type='CrossEntropyLoss', loss_weight=0.4)),
        train_cfg=dict(), test_cfg=dict(mode='whole'))
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = SEG_MODELS.build(ConfigDict(cfg))
    samples = []
    for _ in range(2):
        s = SegDataSample(metainfo=dict(img_shape=(64, 64), ori_shape=(64, 64), pad_shape=(64, 64)))
        s.gt_sem_seg = PixelData(data=torch.randint(0, 5, (1, 64, 64)))
        samples.append(s)
    losses = model.loss(torch.randn(2, 3, 64, 64), samples)
    total = sum(v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total)
    total.backward()
    assert model.backbone.blocks[0].attn.relative_position_bias_table.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        pred = model.predict(torch.randn(1, 3, 64, 64), [samples[0]])
    assert pred[0].pred_sem_seg.data.shape == (1, 64, 64)


def test_mmdet_mask_rcnn_on_windowed_vit_and_pyramid():
    """ViTDet layout with mmdet's real Mask R-CNN: windowed ViT -> simple pyramid (5 levels) -> RPN/RoI."""
    from mmdet.registry import MODELS as DET_MODELS
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmengine.structures import InstanceData
    import mmdet
    base = osp.join(osp.dirname(mmdet.__file__), '.mim/configs/_base_/models/mask-rcnn_r50_fpn.py')
    cfg = Config.fromfile(base).model
    cfg.backbone = dict(type='localmim.VisionTransformer', **dict(TINY, img_size=64, patch_size=8, depth=4),
                        pos_embed='learned', out_indices=(-1,), final_norm=False, rel_pos_bias=True,
                        window_size=3, global_blocks=[1, 3], drop_path_rate=0.1, with_cp=True)
    cfg.neck = dict(type='localmim.SimpleFeaturePyramid', in_channels=32, out_channels=256, num_outs=5)
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = DET_MODELS.build(cfg)
    masks = torch.zeros(1, 64, 64, dtype=torch.uint8)
    masks[0, 10:40, 20:50] = 1
    sample = DetDataSample(metainfo=dict(img_shape=(64, 64), ori_shape=(64, 64), pad_shape=(64, 64),
                                         scale_factor=(1., 1.), batch_input_shape=(64, 64)))
    sample.gt_instances = InstanceData(bboxes=torch.tensor([[20., 10., 50., 40.]]), labels=torch.tensor([3]),
                                       masks=BitmapMasks(masks.numpy(), 64, 64))
    model.train()
    losses = model.loss(torch.randn(1, 3, 64, 64), [sample])
    total = sum(v.sum() if isinstance(v, torch.Tensor) else sum(v) for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total)
    total.backward()
    assert model.backbone.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
    assert model.neck.levels[0][0].weight.grad is not None


@pytest.mark.parametrize('backbone', ['vit', 'swin'])
def test_mask_rcnn_roi_features_are_roi_align_of_the_pyramid(backbone):
    """mmcv's compiled RoIAlign reads NCHW memory without looking at strides: fed a channels-last
    view (what ``transpose().reshape()`` of tokens gives, and what convolutions pass on), its RoI
    features were garbage and Mask R-CNN could not learn. The RoI features mmdet's extractor takes
    from our backbones' pyramids must equal torchvision's roi_align (stride-aware) on the same maps."""
    import torchvision
    from mmdet.registry import MODELS as DET_MODELS
    from mmengine.registry import DefaultScope
    if backbone == 'vit':
        body = dict(type='localmim.VisionTransformer', **dict(TINY, img_size=64, patch_size=8), out_indices=(-1,),
                    final_norm=False, window_size=4, global_blocks=[1])
        neck = dict(type='localmim.SimpleFeaturePyramid', in_channels=32, out_channels=16, scales=(2, 1, 0.5),
                    norm_cfg=dict(type='localmim.LN2d', eps=1e-6), num_outs=4)
    else:
        body = dict(type='localmim.SwinTransformer', arch=None, img_size=64, embed_dim=16, depths=(1, 1, 1, 1),
                    num_heads=(1, 2, 2, 4), window_size=2, out_indices=(0, 1, 2, 3))
        neck = dict(type='FPN', in_channels=[16, 32, 64, 128], out_channels=16, num_outs=4)
    with DefaultScope.overwrite_default_scope('mmdet'):
        backbone_net, neck_net = DET_MODELS.build(body), DET_MODELS.build(neck)
        extractor = DET_MODELS.build(dict(
            type='SingleRoIExtractor', roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=0),
            out_channels=16, featmap_strides=[4, 8, 16]))
    torch.manual_seed(0)
    maps = neck_net(backbone_net(torch.randn(2, 3, 64, 64)))
    assert all(m.is_contiguous() for m in maps)
    rois = torch.tensor([[0, 3., 5., 40., 33.], [1, 10., 12., 30., 60.], [1, 0., 0., 63., 63.]])
    feats = extractor(maps[:3], rois)
    level = extractor.map_roi_levels(rois, 3)
    for i, (roi, lvl) in enumerate(zip(rois, level.tolist())):
        ref = torchvision.ops.roi_align(maps[lvl], roi[None], 7, 1 / [4, 8, 16][lvl], 0, aligned=True)
        torch.testing.assert_close(feats[i:i + 1], ref, atol=1e-5, rtol=0)
