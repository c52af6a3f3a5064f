# Mask R-CNN with a LocalMIM ViT-B backbone, ViTDet style (Li et al., 2022), on COCO.
#   backbone: windowed attention (14x14) in all blocks but 2, 5, 8, 11 (global), relative position
#     bias, drop path 0.1, no cls token, no final norm; position table resampled 14x14 -> 64x64.
#   neck: simple feature pyramid from the last (stride 16) map: scales 4, 2, 1, 0.5 -> strides
#     4..32 (+ a stride-64 level for the RPN), 256 channels, LayerNorm.
#   heads: 2-conv RPN, 4-conv + 1-fc box head and 4-conv mask head, both with LayerNorm.
#   data: large-scale jitter at 1024 (resize 0.1-2.0, crop 1024, pad 1024), flip.
#   schedule: AdamW lr 1e-4, wd 0.1, layer decay 0.7, AMP, batch 64 (16 GPUs x 4 images),
#     184,375 iterations (~100 epochs), 250 warmup iterations, lr x0.1 at 163,889 and 177,546.
# Reference: ViTDet ViT-B with MAE init reaches 51.6 box AP / 45.9 mask AP with this recipe.
# Options: rel_pos_type='decomposed' for ViTDet's own relative positions (rel_pos_h/rel_pos_w, as
#   detectron2) instead of the BEiT-style table; with_cp=True recomputes each block's activations
#   in the backward pass (same gradients, less memory). Cost per config: tools/benchmark_downstream.py.
#
# COCO root: COCO_ROOT=/path/to/coco (holding train2017/, val2017/, annotations/) or
#   --cfg-options train_dataloader.dataset.data_root=... val_dataloader.dataset.data_root=...
#                 test_dataloader.dataset.data_root=... val_evaluator.ann_file=... test_evaluator.ann_file=...
# Pretrained weights: a converted backbone checkpoint (backbone.* keys) at `pretrained`, or
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/default_runtime.py',
]
data_root = '{{$COCO_ROOT:data/coco}}'
pretrained = 'checkpoints/localmim_vit-base_pretrain_converted.pth'
image_size = (1024, 1024)
norm_cfg = dict(type='localmim.LN2d', eps=1e-6)  # channels-first LayerNorm for the conv heads

model = dict(
    backbone=dict(
        _delete_=True,
        type='localmim.VisionTransformer', arch='base', img_size=image_size[0], pos_embed='learned',
        window_size=14, global_blocks=(2, 5, 8, 11), rel_pos_bias=True, rel_pos_type='table',
        drop_path_rate=0.1, out_indices=(-1,), final_norm=False, with_cp=False,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    neck=dict(
        _delete_=True,
        type='localmim.SimpleFeaturePyramid', in_channels=768, out_channels=256,
        scales=(4, 2, 1, 0.5), norm_cfg=norm_cfg, num_outs=5),
    rpn_head=dict(num_convs=2),
    roi_head=dict(
        bbox_head=dict(type='Shared4Conv1FCBBoxHead', conv_out_channels=256, norm_cfg=norm_cfg),
        mask_head=dict(norm_cfg=norm_cfg)))

# large-scale jitter; padding with the mean colour (BGR) makes the pad 0 after normalisation
pad_val = dict(img=(103.53, 116.28, 123.675), masks=0)
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomResize', scale=image_size, ratio_range=(0.1, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_type='absolute_range', crop_size=image_size, recompute_bbox=True,
         allow_negative_crop=True),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1e-2, 1e-2)),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Pad', size=image_size, pad_val=pad_val),
    dict(type='PackDetInputs'),
]
# the global blocks' relative position tables are built for the 64x64 grid: pad to 1024 at test too
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='Pad', size=image_size, pad_val=pad_val),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=4, num_workers=4, sampler=dict(_delete_=True, type='InfiniteSampler', shuffle=True),
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + '/annotations/instances_val2017.json')
test_evaluator = val_evaluator

max_iters = 184375
optim_wrapper = dict(
    type='localmim.AmpOptimWrapper',
    constructor='localmim.LayerDecayOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.1),
    paramwise_cfg=dict(layer_decay_rate=0.7))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=250),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters, milestones=[163889, 177546], gamma=0.1),
]
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters, val_interval=5000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(logger=dict(interval=50),
                     checkpoint=dict(by_epoch=False, interval=5000, max_keep_ckpts=2))
log_processor = dict(by_epoch=False)
# base_batch_size = 16 GPUs x 4 images; with --auto-scale-lr the lr follows the real batch
auto_scale_lr = dict(enable=False, base_batch_size=64)
