# CPU-sized counterpart of vit-base_linprobe_in1k.py on Fashion-MNIST (frozen tiny ViT, cls token
# after the final norm, BatchNorm + Linear, timm's Lars lr 0.1 x 256 / 256, 10 epochs).
# Give the pretrained encoder with --cfg-options model.backbone.init_cfg.checkpoint=PATH.
_base_ = ['_base_/runtime.py', '_base_/fashion_mnist.py']
lr, warmup_epochs, max_epochs = 0.1, 1, 10
mean, std = (0.286, 0.286, 0.286), (0.353, 0.353, 0.353)
train_pipeline = [
    dict(type='localmim.TimmTransform', input_size=64, is_training=True, scale=(0.5, 1.0), hflip=0.5,
         color_jitter=None, auto_augment=None, re_prob=0., interpolation='bicubic', mean=mean, std=std),
    dict(type='localmim.PackInputs'),
]
train_dataloader = dict(batch_size=256, dataset=dict(pipeline=train_pipeline))
model = dict(
    type='localmim.ImageClassifier',
    backbone=dict(type='localmim.VisionTransformer', arch=None, img_size=64, patch_size=8, embed_dim=96,
                  depth=8, num_heads=3, pos_embed='learned', final_norm=True, out_type='cls_token',
                  out_indices=(-1,),
                  init_cfg=dict(type='Pretrained', prefix='backbone.',
                                checkpoint='checkpoints/localmim_vit-tiny_fmnist_pretrain_converted.pth')),
    num_classes=10, fc_norm=False, linear_probe=True, head_init_std=0.01, label_smoothing=0.,
    data_preprocessor={{_base_.data_preprocessor}})
optim_wrapper = dict(
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
auto_scale_lr = dict(enable=False, base_batch_size=256)
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
default_hooks = dict(logger=dict(interval=20))
