# UperNet + FCN auxiliary head with a LocalMIM ViT-B backbone on ADE20K (the release's recipe):
#   backbone: taps at blocks 1, 3, 9, 11 (no final norm), BEiT-style relative position bias and
#     layer scale (init 1.0: the pretrained function is kept at the start) added for fine-tuning,
#     drop path 0.1, position table resampled 14x14 -> 32x32.
#   neck: 4-level pyramid, one level per tap: x4 (deconv, norm, GELU, deconv), x2 (deconv),
#     identity, 2x2 max pool; 768 channels throughout.
#   heads: UperHead with 768 channels, FCN auxiliary head (loss weight 0.4) on level 2.
#   schedule: AdamW lr 4e-4, wd 0.05, layer decay 0.65, 1500 linear warmup iterations then poly
#     (power 1) to 0 at 160k iterations, batch 16 (8 GPUs x 2), crop 512.
#   test: sliding window 512, stride 341. Mixed precision: add --amp to tools/train.py.
#   with_cp=True recomputes each block's activations in the backward pass (same gradients, less
#   memory). Cost: tools/benchmark_downstream.py (see README.md).
# Reported: 49.5 mIoU (a public reproduction of the release got 48.65).
#
# ADE20K root: ADE20K_ROOT=/path/to/ADEChallengeData2016 or --cfg-options
#   train_dataloader.dataset.data_root=... val_dataloader.dataset.data_root=... test_dataloader.dataset.data_root=...
# Pretrained weights: a converted checkpoint (backbone.* keys) at `pretrained`, or
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = [
    'mmseg::_base_/models/upernet_beit.py', 'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py', 'mmseg::_base_/schedules/schedule_160k.py'
]
data_root = '{{$ADE20K_ROOT:data/ade/ADEChallengeData2016}}'
pretrained = 'checkpoints/localmim_vit-base_pretrain_converted.pth'
crop_size = (512, 512)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(
        _delete_=True,
        type='localmim.VisionTransformer', arch='base', img_size=crop_size[0], pos_embed='learned',
        out_indices=(1, 3, 9, 11), final_norm=False, rel_pos_bias=True, init_values=1.0, drop_path_rate=0.1,
        with_cp=False,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    neck=dict(
        _delete_=True,
        type='localmim.SimpleFeaturePyramid', in_channels=768, scales=(4, 2, 1, 0.5), keep_channels=True,
        pool='max', norm_cfg=dict(type='SyncBN', requires_grad=True)),
    decode_head=dict(in_channels=[768, 768, 768, 768], channels=768, num_classes=150),
    auxiliary_head=dict(in_channels=768, in_index=2, num_classes=150),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 341)))

train_dataloader = dict(batch_size=2, dataset=dict(data_root=data_root))
val_dataloader = dict(batch_size=1, dataset=dict(data_root=data_root))
test_dataloader = val_dataloader

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    constructor='localmim.LayerDecayOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=4e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(layer_decay_rate=0.65))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, by_epoch=False, begin=1500, end=160000),
]
auto_scale_lr = dict(enable=False, base_batch_size=16)
