"""COCO detection / instance segmentation (mmdet Mask R-CNN) with LocalMIM ViT and Swin backbones.

- every full-size config in mm_configs/coco parses and builds its model, pipelines and optimizer,
  with the recipe's numbers (layer-decay lrs, no weight decay on norms and position tables);
- the tiny Fashion-canvas configs train 2 iterations and validate through tools/train.py;
- tools/test.py writes COCO json results whose pycocotools evaluation equals the logged table.
"""
import json
import math
import os.path as osp

import numpy as np
import pytest
import torch
from _dense_helpers import (assert_loaded_encoder, config_names, load_config, logged_metrics,
                            make_canvas_set, run_tools, tiny_pretrained_vit, train_tiny_configs)
from mmengine.dataset import Compose
from mmengine.optim import build_optim_wrapper
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from localmim.models import LayerNorm2d, SimpleFeaturePyramid, SwinTransformer, VisionTransformer

FULL_CONFIGS = [n for n in config_names('coco') if 'fmnist' not in n]
TINY_CONFIGS = {'vit': 'mask-rcnn_vit-tiny_simplefpn_fmnist-canvas.py',
                'swin': 'mask-rcnn_swin-tiny_fpn_fmnist-canvas.py'}
METRIC_SUFFIXES = ('mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m', 'mAP_l')  # COCOeval stats[0:6]


def build_detector(cfg):
    from mmdet.registry import MODELS
    return MODELS.build(cfg.model)


def param_group_of(optimizer, param):
    return next(g for g in optimizer.param_groups if any(p is param for p in g['params']))


def test_all_full_size_configs_are_listed():
    assert FULL_CONFIGS == ['example_swap_backbone.py', 'mask-rcnn_localmim-swin-b_fpn_1x_coco.py',
                            'mask-rcnn_localmim-swin-b_fpn_ms-crop-3x_coco.py',
                            'mask-rcnn_localmim-vit-b_simplefpn_lsj-1024-100e_coco.py']


def test_vit_b_vitdet_config_builds_with_its_recipe(monkeypatch):
    monkeypatch.setenv('COCO_ROOT', '/data/my_coco')
    cfg = load_config('coco', 'mask-rcnn_localmim-vit-b_simplefpn_lsj-1024-100e_coco.py')
    assert cfg.train_dataloader.dataset.data_root == '/data/my_coco'
    assert cfg.val_evaluator.ann_file == '/data/my_coco/annotations/instances_val2017.json'
    assert cfg.train_dataloader.batch_size * 16 == 64 and cfg.auto_scale_lr.base_batch_size == 64
    assert cfg.train_cfg.max_iters == 184375 and cfg.param_scheduler[0].end == 250
    assert cfg.param_scheduler[1].milestones == [163889, 177546]
    assert cfg.optim_wrapper.type == 'localmim.AmpOptimWrapper'  # bf16 where native, CPU too

    model = build_detector(cfg)
    backbone = model.backbone
    assert isinstance(backbone, VisionTransformer) and backbone.grid == (64, 64)
    windowed = [i for i, block in enumerate(backbone.blocks) if getattr(block, 'window_size', None) == 14]
    assert windowed == [0, 1, 3, 4, 6, 7, 9, 10]
    assert all(hasattr(block.attn, 'relative_position_bias_table') for block in backbone.blocks)
    assert backbone.blocks[-1].drop_path1.drop_prob == pytest.approx(0.1)
    assert isinstance(model.neck, SimpleFeaturePyramid) and model.neck.num_outs == 5
    assert model.rpn_head.num_convs == 2
    bbox_head, mask_head = model.roi_head.bbox_head, model.roi_head.mask_head
    assert len(bbox_head.shared_convs) == 4 and len(bbox_head.shared_fcs) == 1
    assert all(isinstance(conv.norm, LayerNorm2d) for conv in [*bbox_head.shared_convs, *mask_head.convs])
    assert len(mask_head.convs) == 4

    # layer decay 0.7 over 14 layer ids (embeddings, 12 blocks, rest); no decay on tables/1-D params
    optim_cfg = cfg.optim_wrapper.copy()
    optim_cfg.type = 'OptimWrapper'  # AMP needs CUDA; the parameter groups are the same
    optimizer = build_optim_wrapper(model, optim_cfg).optimizer
    qkv0 = param_group_of(optimizer, backbone.blocks[0].attn.qkv.weight)
    assert qkv0['lr'] == pytest.approx(1e-4 * 0.7 ** 12) and qkv0['weight_decay'] == 0.1
    assert param_group_of(optimizer, backbone.pos_embed)['lr'] == pytest.approx(1e-4 * 0.7 ** 13)
    assert param_group_of(optimizer, backbone.pos_embed)['weight_decay'] == 0
    table = backbone.blocks[5].attn.relative_position_bias_table
    assert param_group_of(optimizer, table)['weight_decay'] == 0
    head = param_group_of(optimizer, model.roi_head.bbox_head.fc_cls.weight)
    assert head['lr'] == pytest.approx(1e-4) and head['weight_decay'] == 0.1

    Compose(cfg.train_pipeline)  # every transform's arguments are valid
    image = np.random.default_rng(0).integers(0, 256, (600, 900, 3), dtype=np.uint8)
    sample = Compose(cfg.test_pipeline[1:3])(dict(img=image, img_shape=image.shape[:2], ori_shape=image.shape[:2]))
    assert sample['img'].shape[:2] == (1024, 1024)  # resized to 683x1024 then padded to 1024


@pytest.mark.parametrize('name', ['mask-rcnn_localmim-swin-b_fpn_1x_coco.py', 'example_swap_backbone.py'])
def test_swin_b_configs_build_with_mmdets_swin_recipe(name):
    cfg = load_config('coco', name)
    model = build_detector(cfg)
    assert isinstance(model.backbone, SwinTransformer) and model.backbone.dims == [128, 256, 512, 1024]
    assert model.neck.in_channels == [128, 256, 512, 1024]
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        feats = model.neck(model.backbone(x))
    assert [tuple(f.shape[-2:]) for f in feats] == [(16, 24), (8, 12), (4, 6), (2, 3), (1, 2)]
    if name == 'example_swap_backbone.py':
        assert cfg.optim_wrapper.optimizer.type == 'SGD'  # the rest is mmdet's R-50 config, untouched
        return
    assert cfg.train_cfg.max_epochs == 12 and cfg.param_scheduler[1].milestones == [8, 11]
    optimizer = build_optim_wrapper(model, cfg.optim_wrapper).optimizer
    assert optimizer.defaults['lr'] == 1e-4 and optimizer.defaults['weight_decay'] == 0.05
    layer = model.backbone.layers[2].blocks[3]
    assert param_group_of(optimizer, layer.attn.relative_position_bias_table)['weight_decay'] == 0
    assert param_group_of(optimizer, layer.norm1.weight)['weight_decay'] == 0
    assert param_group_of(optimizer, model.backbone.norm.weight)['weight_decay'] == 0
    assert param_group_of(optimizer, layer.attn.qkv.weight)['weight_decay'] == 0.05


def test_swin_b_3x_config_is_the_1x_model_with_mmdets_3x_schedule():
    one = load_config('coco', 'mask-rcnn_localmim-swin-b_fpn_1x_coco.py')
    three = load_config('coco', 'mask-rcnn_localmim-swin-b_fpn_ms-crop-3x_coco.py')
    assert three.model == one.model
    assert three.train_cfg.max_epochs == 36 and three.param_scheduler[1].milestones == [27, 33]
    assert any(t.type == 'RandomChoice' for t in three.train_pipeline)
    Compose(three.train_pipeline)  # every transform's arguments are valid


def test_tiny_vit_config_takes_the_tiny_pretrained_encoder(tmp_path):
    encoder = tiny_pretrained_vit(str(tmp_path / 'backbone.pth'))
    cfg = load_config('coco', TINY_CONFIGS['vit'])
    cfg.model.backbone.init_cfg = dict(type='Pretrained', checkpoint=str(tmp_path / 'backbone.pth'),
                                       prefix='backbone.')
    model = build_detector(cfg)
    model.init_weights()
    assert_loaded_encoder(model.backbone, encoder)
    assert model.backbone.grid == (8, 8)  # the small canvases at the pretraining resolution
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        feats = model.neck(model.backbone(x))
    assert [f.shape[-1] for f in feats] == [16, 8, 4, 2]  # strides 4-32, as the heads' strides
    assert model.rpn_head.prior_generator.strides == [(4, 4), (8, 8), (16, 16), (32, 32)]
    assert model.roi_head.bbox_roi_extractor.featmap_strides == [4, 8, 16]


@pytest.fixture(scope='module')
def canvas_root(tmp_path_factory):
    return make_canvas_set(tmp_path_factory)


@pytest.fixture(scope='module')
def trained(canvas_root, tmp_path_factory):
    return train_tiny_configs('coco', TINY_CONFIGS, canvas_root, tmp_path_factory)


@pytest.mark.parametrize('kind', sorted(TINY_CONFIGS))
def test_tiny_config_trains_and_validates_with_coco_metric(trained, kind):
    work_dir = trained[kind]
    assert osp.isfile(osp.join(work_dir, 'iter_2.pth'))
    losses = logged_metrics(work_dir, 'loss_mask')
    assert all(math.isfinite(losses[k]) for k in ('loss', 'loss_rpn_cls', 'loss_cls', 'loss_bbox', 'loss_mask'))
    metrics = logged_metrics(work_dir, 'coco/bbox_mAP')
    for iou_type in ('bbox', 'segm'):
        for suffix in METRIC_SUFFIXES:
            value = metrics[f'coco/{iou_type}_{suffix}']
            assert math.isfinite(value) and (value == -1 or 0 <= value <= 1)


def test_test_tool_writes_coco_json_that_pycocotools_scores_as_logged(trained, canvas_root, tmp_path):
    config = osp.join('mm_configs', 'coco', TINY_CONFIGS['vit'])
    prefix = str(tmp_path / 'results')
    run_tools([('test.py', [config, osp.join(trained['vit'], 'iter_2.pth'), '--work-dir', str(tmp_path),
                            '--cfg-options', 'test_dataloader.num_workers=0',
                            f'test_evaluator.outfile_prefix={prefix}'])], canvas_root)
    metrics = logged_metrics(str(tmp_path), 'coco/segm_mAP')
    ground_truth = COCO(osp.join(canvas_root, 'annotations', 'instances_validation.json'))
    for iou_type in ('bbox', 'segm'):
        with open(f'{prefix}.{iou_type}.json') as file:
            results = json.load(file)
        assert results, f'no {iou_type} results written'
        assert {r['image_id'] for r in results} <= set(ground_truth.getImgIds())
        assert {r['category_id'] for r in results} <= set(range(1, 11))
        evaluation = COCOeval(ground_truth, ground_truth.loadRes(f'{prefix}.{iou_type}.json'), iou_type)
        evaluation.params.maxDets = [100, 300, 1000]  # mmdet's CocoMetric protocol (proposal_nums)
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
        for stat, suffix in zip(evaluation.stats, METRIC_SUFFIXES):
            assert metrics[f'coco/{iou_type}_{suffix}'] == pytest.approx(round(float(stat), 3), abs=1e-6)
