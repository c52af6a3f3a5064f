"""ADE20K semantic segmentation (mmseg UperNet) with LocalMIM ViT and Swin backbones.

- every full-size config in mm_configs/ade20k parses and builds, with the recipe's numbers;
- the tiny Fashion-canvas configs train 2 iterations and validate (IoUMetric) through tools/train.py;
- tools/test.py's mIoU and per-class table equal a naive count over the dumped predictions and
  the label PNGs;
- sliding-window inference equals whole inference when one window covers the image, and the
  average of the overlapping windows' logits otherwise.
"""
import glob
import math
import os.path as osp
import pickle
import re

import cv2
import numpy as np
import pytest
import torch
from _dense_helpers import (assert_loaded_encoder, config_names, load_config, log_text, logged_metrics,
                            make_canvas_set, run_tools, tiny_pretrained_vit, train_tiny_configs)
from mmengine.optim import build_optim_wrapper

from localmim.datasets.fmnist_canvas import FASHION_ADE_CLASSES
from localmim.models import SimpleFeaturePyramid, SwinTransformer, VisionTransformer

FULL_CONFIGS = [n for n in config_names('ade20k') if 'fmnist' not in n]
TINY_CONFIGS = {'vit': 'upernet_vit-tiny_fmnist-canvas.py', 'swin': 'upernet_swin-tiny_fmnist-canvas.py'}


def build_segmentor(cfg):
    from mmseg.registry import MODELS
    return MODELS.build(cfg.model)


def param_group_of(optimizer, param):
    return next(g for g in optimizer.param_groups if any(p is param for p in g['params']))


def test_all_full_size_configs_are_listed():
    assert FULL_CONFIGS == ['example_swap_backbone.py', 'upernet_localmim-swin-b_8xb2-160k_ade20k-512x512.py',
                            'upernet_localmim-vit-b_8xb2-160k_ade20k-512x512.py']


def test_swap_example_is_mmsegs_upernet_with_our_swin_b():
    cfg = load_config('ade20k', 'example_swap_backbone.py')
    assert cfg.optim_wrapper.optimizer.type == 'SGD' and cfg.train_cfg.max_iters == 160000  # mmseg's, untouched
    assert cfg.model.backbone.init_cfg.prefix == 'backbone.'
    model = build_segmentor(cfg)
    assert isinstance(model.backbone, SwinTransformer) and model.backbone.dims == [128, 256, 512, 1024]
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        logits = model.eval().encode_decode(x, [dict(img_shape=(64, 64))])
    assert logits.shape == (1, 150, 64, 64)


def test_stock_mmseg_config_with_the_inherited_pretrained_key_builds_and_explains(tmp_path):
    # mmseg's UperNet configs set model.pretrained='open-mmlab://resnet50_v1c', which its
    # EncoderDecoder hands to whatever backbone the config ends up with.
    config = tmp_path / 'swap.py'
    config.write_text(
        "_base_ = 'mmseg::upernet/upernet_r50_4xb4-160k_ade20k-512x512.py'\n"
        "model = dict(backbone=dict(_delete_=True, type='localmim.SwinTransformer', arch=None,\n"
        "    embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4), window_size=2,\n"
        "    out_indices=(0, 1, 2, 3)),\n"
        "    decode_head=dict(in_channels=[16, 32, 64, 128], channels=32),\n"
        "    auxiliary_head=dict(in_channels=64, channels=16))\n")
    cfg = load_config(str(config))
    assert cfg.model.pretrained == 'open-mmlab://resnet50_v1c'
    with pytest.warns(UserWarning, match=r"localmim.SwinTransformer ignores "
                      r"pretrained='open-mmlab://resnet50_v1c' .* init_cfg=dict\(type='Pretrained'"):
        model = build_segmentor(cfg)
    assert isinstance(model.backbone, SwinTransformer)


def test_vit_b_upernet_config_builds_with_the_release_recipe(monkeypatch):
    monkeypatch.setenv('ADE20K_ROOT', '/data/ADEChallengeData2016')
    cfg = load_config('ade20k', 'upernet_localmim-vit-b_8xb2-160k_ade20k-512x512.py')
    assert cfg.train_dataloader.dataset.data_root == '/data/ADEChallengeData2016'
    assert cfg.test_dataloader.dataset.data_root == '/data/ADEChallengeData2016'
    assert cfg.train_dataloader.batch_size * 8 == 16 and cfg.train_cfg.max_iters == 160000
    assert (cfg.param_scheduler[0].end, cfg.param_scheduler[1].begin, cfg.param_scheduler[1].end) == (1500, 1500,
                                                                                                     160000)
    assert cfg.model.test_cfg == dict(mode='slide', crop_size=(512, 512), stride=(341, 341))
    model = build_segmentor(cfg)
    backbone = model.backbone
    assert isinstance(backbone, VisionTransformer) and backbone.out_indices == [1, 3, 9, 11]
    assert backbone.grid == (32, 32) and not backbone.final_norm
    block = backbone.blocks[7]
    assert hasattr(block.attn, 'relative_position_bias_table') and torch.all(block.ls1.gamma == 1)
    assert backbone.blocks[-1].drop_path1.drop_prob == pytest.approx(0.1)
    assert isinstance(model.neck, SimpleFeaturePyramid) and model.neck.level_channels == [768] * 4
    assert model.decode_head.channels == 768 and model.decode_head.num_classes == 150
    assert model.auxiliary_head.in_index == 2 and model.auxiliary_head.loss_decode.loss_weight == 0.4
    assert [len(level) for level in model.neck.levels] == [4, 1, 0, 1]  # deconv-norm-GELU-deconv, deconv, -, pool

    optimizer = build_optim_wrapper(model, cfg.optim_wrapper).optimizer
    qkv0 = param_group_of(optimizer, block.attn.qkv.weight)
    assert qkv0['lr'] == pytest.approx(4e-4 * 0.65 ** 5) and qkv0['weight_decay'] == 0.05  # block 7 = id 8 of 13
    assert param_group_of(optimizer, backbone.patch_embed.proj.weight)['lr'] == pytest.approx(4e-4 * 0.65 ** 13)
    for no_decay in (backbone.pos_embed, block.attn.relative_position_bias_table, block.ls1.gamma):
        assert param_group_of(optimizer, no_decay)['weight_decay'] == 0
    assert param_group_of(optimizer, model.decode_head.conv_seg.weight)['lr'] == pytest.approx(4e-4)


def test_swin_b_upernet_config_builds_with_mmsegs_swin_recipe():
    cfg = load_config('ade20k', 'upernet_localmim-swin-b_8xb2-160k_ade20k-512x512.py')
    model = build_segmentor(cfg)
    assert isinstance(model.backbone, SwinTransformer) and model.backbone.dims == [128, 256, 512, 1024]
    assert model.backbone.layers[3].blocks[-1].drop_path1.drop_prob == pytest.approx(0.3)
    assert model.decode_head.in_channels == [128, 256, 512, 1024] and model.auxiliary_head.in_channels == 512
    assert model.decode_head.num_classes == 150
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        logits = model.eval().encode_decode(x, [dict(img_shape=(64, 64))])
    assert logits.shape == (1, 150, 64, 64)
    optimizer = build_optim_wrapper(model, cfg.optim_wrapper).optimizer
    assert {g['lr'] for g in optimizer.param_groups} == {6e-5}  # no layer decay
    layer = model.backbone.layers[2].blocks[5]
    assert param_group_of(optimizer, layer.attn.qkv.weight)['weight_decay'] == 0.01
    for no_decay in (layer.attn.relative_position_bias_table, layer.norm2.weight, model.backbone.norm0.bias):
        assert param_group_of(optimizer, no_decay)['weight_decay'] == 0


def tiny_segmentor(kind, **test_cfg):
    cfg = load_config('ade20k', TINY_CONFIGS[kind])
    if test_cfg:
        cfg.model.test_cfg = test_cfg
    torch.manual_seed(0)
    return build_segmentor(cfg).eval()


@pytest.mark.parametrize('kind, image_hw, crop', [('vit', (64, 64), (64, 64)),
                                                  ('swin', (96, 128), (160, 160))])
def test_slide_inference_equals_whole_inference_when_the_window_covers_the_image(kind, image_hw, crop):
    model = tiny_segmentor(kind, mode='slide', crop_size=crop, stride=(85, 85))
    x = torch.randn(2, 3, *image_hw)
    with torch.no_grad():
        whole = model.whole_inference(x, [dict(img_shape=image_hw)] * 2)
        slide = model.slide_inference(x, [dict(img_shape=image_hw)] * 2)
    assert whole.shape == (2, 11, *image_hw)
    torch.testing.assert_close(slide, whole, rtol=0, atol=0)


def test_slide_inference_averages_the_overlapping_windows():
    model = tiny_segmentor('vit', mode='slide', crop_size=(64, 64), stride=(32, 32))  # the ViT's 64 px input
    x = torch.randn(1, 3, 64, 96)  # two windows: columns 0-63 and 32-95
    with torch.no_grad():
        slide = model.slide_inference(x, [dict(img_shape=(64, 96))])
        left = model.encode_decode(x[..., :64], [dict(img_shape=(64, 64))])
        right = model.encode_decode(x[..., 32:], [dict(img_shape=(64, 64))])
    torch.testing.assert_close(slide[..., :32], left[..., :32])
    torch.testing.assert_close(slide[..., 32:64], (left[..., 32:] + right[..., :32]) / 2)
    torch.testing.assert_close(slide[..., 64:], right[..., 32:])


def test_tiny_vit_config_takes_the_tiny_pretrained_encoder(tmp_path):
    encoder = tiny_pretrained_vit(str(tmp_path / 'backbone.pth'))
    cfg = load_config('ade20k', TINY_CONFIGS['vit'])
    cfg.model.backbone.init_cfg = dict(type='Pretrained', checkpoint=str(tmp_path / 'backbone.pth'),
                                       prefix='backbone.')
    model = build_segmentor(cfg)
    model.init_weights()
    assert_loaded_encoder(model.backbone, encoder)
    assert model.backbone.out_indices == [1, 3, 5, 7]  # the pretraining taps


@pytest.fixture(scope='module')
def canvas_root(tmp_path_factory):
    return make_canvas_set(tmp_path_factory)


@pytest.fixture(scope='module')
def trained(canvas_root, tmp_path_factory):
    return train_tiny_configs('ade20k', TINY_CONFIGS, canvas_root, tmp_path_factory)


def class_table(text):
    """{class: IoU} of the last per-class table printed by IoUMetric (nan for classes never seen)."""
    rows = re.findall(r'^\|\s*(.+?)\s*\|\s*([-\d.na]+)\s*\|\s*([-\d.na]+)\s*\|$', text, flags=re.M)
    table = {}
    for name, iou, _ in rows:
        if name in FASHION_ADE_CLASSES:
            table[name] = float(iou)
    return table


@pytest.mark.parametrize('kind', sorted(TINY_CONFIGS))
def test_tiny_config_trains_and_validates_with_iou_metric(trained, kind):
    work_dir = trained[kind]
    assert osp.isfile(osp.join(work_dir, 'iter_2.pth'))
    losses = logged_metrics(work_dir, 'decode.loss_ce')
    assert math.isfinite(losses['decode.loss_ce']) and math.isfinite(losses['aux.loss_ce'])
    metrics = logged_metrics(work_dir, 'mIoU')
    assert all(0 <= metrics[k] <= 100 for k in ('aAcc', 'mIoU', 'mAcc'))
    assert set(class_table(log_text(work_dir))) == set(FASHION_ADE_CLASSES)


def naive_ious(dumped, canvas_root):
    """Per-class IoU (11 classes) counted pixel by pixel over the dumped predictions, ground truth read
    from the label PNGs with ADE20K's reduce_zero_label (0 -> ignore, k -> k - 1)."""
    intersection, union = np.zeros(11), np.zeros(11)
    for sample in dumped:
        name = osp.splitext(osp.basename(sample['img_path']))[0]
        label = cv2.imread(osp.join(canvas_root, 'annotations', 'validation', name + '.png'), cv2.IMREAD_UNCHANGED)
        label = label.astype(np.int64) - 1  # file 0 (never written) would become -1 = ignore
        pred = sample['pred_sem_seg']['data'][0].numpy()
        assert pred.shape == label.shape
        valid = label >= 0
        for c in range(11):
            p, g = (pred == c) & valid, (label == c) & valid
            intersection[c] += (p & g).sum()
            union[c] += (p | g).sum()
    with np.errstate(invalid='ignore'):
        return intersection / union


def test_test_tool_miou_and_class_table_match_a_naive_count(trained, canvas_root, tmp_path):
    dump = str(tmp_path / 'predictions.pkl')
    shown = tmp_path / 'shown'
    run_tools([('test.py', [osp.join('mm_configs', 'ade20k', TINY_CONFIGS['vit']),
                            osp.join(trained['vit'], 'iter_2.pth'), '--work-dir', str(tmp_path), '--out', dump,
                            '--show-dir', str(shown), '--cfg-options', 'test_dataloader.num_workers=0'])],
              canvas_root)
    # --show-dir draws every test image (mmseg's hook alone draws every 50th batch: none of these 4)
    drawn = glob.glob(osp.join(shown, '**', '*.png'), recursive=True)
    assert len(drawn) == 4 and all(cv2.imread(path) is not None for path in drawn)
    with open(dump, 'rb') as file:  # our own dump of this run's predictions
        dumped = pickle.load(file)
    assert len(dumped) == 4
    ious = naive_ious(dumped, canvas_root)
    metrics = logged_metrics(str(tmp_path), 'mIoU')
    assert metrics['mIoU'] == pytest.approx(np.round(np.nanmean(ious) * 100, 2), abs=1e-6)
    table = class_table(log_text(str(tmp_path)))
    for name, iou in zip(FASHION_ADE_CLASSES, ious):
        if np.isnan(iou):
            assert np.isnan(table[name])
        else:
            assert table[name] == pytest.approx(np.round(iou * 100, 2), abs=1e-6)
