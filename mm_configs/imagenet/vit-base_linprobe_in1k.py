# ViT-B/16 linear probe, MAE's protocol: frozen encoder, cls token after the final norm,
# BatchNorm1d without affine + Linear head (std 0.01); LARS (timm's Lars, trust ratio on the
# 2-D weight only), lr 0.1 x 16384 / 256 = 6.4, wd 0, momentum 0.9, 90 epochs, warmup 10,
# batch 16384; RandomResizedCrop + flip only, no mixup, no label smoothing.
_base_ = ['_base_/runtime.py', '_base_/imagenet_finetune.py']
lr, warmup_epochs, max_epochs = 6.4, 10, 90
pretrained = 'checkpoints/localmim_vit-base_pretrain_converted.pth'
mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
train_pipeline = [
    dict(type='localmim.LoadImage'),
    dict(type='localmim.TimmTransform', input_size=224, is_training=True, scale=(0.08, 1.0), hflip=0.5,
         color_jitter=None, auto_augment=None, re_prob=0., interpolation='bicubic', mean=mean, std=std),
    dict(type='localmim.PackInputs'),
]
train_dataloader = dict(batch_size=2048,  # per GPU; 8 GPUs -> 16384
                        dataset=dict(pipeline=train_pipeline))
model = dict(
    type='localmim.ImageClassifier',
    backbone=dict(type='localmim.VisionTransformer', arch='base', img_size=224, pos_embed='learned',
                  final_norm=True, out_type='cls_token', out_indices=(-1,),
                  init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    num_classes=1000, fc_norm=False, linear_probe=True, head_init_std=0.01, label_smoothing=0.,
    data_preprocessor={{_base_.data_preprocessor}})
optim_wrapper = dict(
    type='AmpOptimWrapper', loss_scale='dynamic',
    constructor='localmim.LayerDecayOptimWrapperConstructor',
    optimizer=dict(type='localmim.Lars', lr=lr, momentum=0.9, weight_decay=0., always_adapt=True),
    paramwise_cfg=dict(no_decay_options=dict(always_adapt=False)))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=0., by_epoch=True, begin=warmup_epochs, end=max_epochs,
         convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
auto_scale_lr = dict(enable=False, base_batch_size=16384)
