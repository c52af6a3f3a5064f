# Short fine-tune of the tiny ViT of pretrain/localmim_vit-tiny_fmnist.py on Fashion-MNIST, sized for
# the demo (tools/demo.py) rather than cut from an ImageNet recipe: a few hundred iterations converge
# because the heavy ImageNet regularisation is gone (no mixup/cutmix, RandAugment, random erasing,
# label smoothing or drop path; light crop + flip only). AdamW 1e-3 at batch 16 (the demo's
# GPU sizes keep it at batch 64; tools/train.py --auto-scale-lr would scale it linearly), layer decay
# 0.75, linear warm-up over the first 10% of the iterations then cosine to 1e-5. Iteration-based:
# change the length with tools/train.py --max-iters N (warm-up and decay keep their proportions).
# Small batches, more steps: at the same images and CPU time (about 90 s on 1 thread), the demo's
# LocalMIM encoder reaches 69.9 after 150 iterations of 64 (2e-3), 72.5 after 300 of 32 (2e-3),
# 73.5 after 600 of 16 at 2e-3, 75.1 at 1e-3 (72.6 with seed 1), 74.8 at 1.5e-3, 75.0 after 1200 of 8
# at 7e-4; random init 59.4 (150 of 64) and 60.8 (600 of 16). 2026-12-05, 2500 test images.
# Without init_cfg it trains from scratch (the random-init reference); fine-tune an encoder with
#   --cfg-options model.backbone.init_cfg.type=Pretrained model.backbone.init_cfg.checkpoint=PATH \
#                 model.backbone.init_cfg.prefix=backbone.
_base_ = ['_base_/runtime.py', '_base_/fashion_mnist.py']
lr, min_lr, max_iters, batch_size = 1e-3, 1e-5, 600, 16
warmup_iters = max_iters // 10
mean, std = (0.286, 0.286, 0.286), (0.353, 0.353, 0.353)
train_pipeline = [
    dict(type='localmim.TimmTransform', input_size=64, is_training=True, scale=(0.8, 1.0), ratio=(0.9, 1.1),
         hflip=0.5, color_jitter=None, auto_augment=None, re_prob=0., interpolation='bicubic', mean=mean, std=std),
    dict(type='localmim.PackInputs'),
]
train_dataloader = dict(batch_size=batch_size, sampler=dict(type='InfiniteSampler', shuffle=True),
                        dataset=dict(pipeline=train_pipeline))
model = dict(
    type='localmim.ImageClassifier',
    backbone=dict(type='localmim.VisionTransformer', arch=None, img_size=64, patch_size=8, embed_dim=96,
                  depth=8, num_heads=3, pos_embed='learned', final_norm=False, drop_path_rate=0.,
                  out_indices=(-1,)),
    num_classes=10, fc_norm=True, head_init_std=0.01, label_smoothing=0., mixup=None,
    data_preprocessor={{_base_.data_preprocessor}})
optim_wrapper = dict(type='OptimWrapper', constructor='localmim.LayerDecayOptimWrapperConstructor',
                     optimizer=dict(type='AdamW', lr=lr, betas=(0.9, 0.999), weight_decay=0.05),
                     paramwise_cfg=dict(layer_decay_rate=0.75))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='CosineAnnealingLR', eta_min_ratio=min_lr / lr, by_epoch=False, begin=warmup_iters, end=max_iters),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
log_processor = dict(by_epoch=False)
default_hooks = dict(logger=dict(interval=20, log_metric_by_epoch=False),
                     checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=1))
auto_scale_lr = dict(enable=False, base_batch_size=batch_size)
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
