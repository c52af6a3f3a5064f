# CPU-sized LocalMIM Swin on Fashion-MNIST at 64 px: patch 4 (16x16 tokens), 4 stages of 2 blocks,
# widths 32/64/128/256, window 4 (stages 0-1 shift, 2-3 are a single window). Masks on 2x2 units
# of 32 px (3 of 4 masked, one per batch), HOG at 8, 16, 32, 32 px as Swin-B, scaled down.
_base_ = [
    '../_base_/models/swin_localmim-b.py',
    '../_base_/datasets/fashion_mnist_pretrain.py',
    '../_base_/schedules/pretrain_adamw.py',
    '../_base_/default_runtime.py',
]
model = dict(
    data_preprocessor=dict(mean=[72.9, 72.9, 72.9], std=[90.0, 90.0, 90.0]),
    encoder=dict(arch=None, img_size=64, embed_dim=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8), window_size=4),
    decoder=dict(dims=(32, 64, 64, 64)),
)
# the mask is drawn in the data pipeline (a loader worker)
train_pipeline = [
    dict(type='Resize', size=64, interpolation='bicubic'),
    dict(type='RandomResizedCrop', size=64, scale=(0.5, 1.0), interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='RandomMaskGenerator', input_size=64, mask_unit=32, mask_ratio=0.75),
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
epochs, warmup_epochs, base_lr, min_lr = 4, 1, 1.5e-3, 0.
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(lr=base_lr))
train_cfg = dict(max_epochs=epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=warmup_epochs, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=epochs - warmup_epochs, eta_min=min_lr, by_epoch=True,
         begin=warmup_epochs, end=epochs, convert_to_iter_based=True),
]
default_hooks = dict(logger=dict(interval=20), checkpoint=dict(interval=1, max_keep_ckpts=2))
