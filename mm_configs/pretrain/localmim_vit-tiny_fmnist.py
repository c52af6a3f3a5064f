# CPU-sized LocalMIM on Fashion-MNIST (64 px, patch 8 -> 8x8 tokens): a tiny ViT (dim 96, depth 8)
# with taps after blocks 1, 3, 5, 7 predicting HOG at 2, 4, 8 and 16 px cells (x4, x2, x1, x0.5
# of the 8 px patch, exactly the ViT-B structure scaled down).
_base_ = [
    '../_base_/datasets/fashion_mnist_pretrain.py',
    '../_base_/schedules/pretrain_adamw.py',
    '../_base_/default_runtime.py',
]
model = dict(
    type='LocalMIM',
    data_preprocessor=dict(type='ImgDataPreprocessor', mean=[72.9, 72.9, 72.9], std=[90.0, 90.0, 90.0]),
    encoder=dict(type='VisionTransformer', arch=None, img_size=64, patch_size=8, embed_dim=96, depth=8,
                 num_heads=3, final_norm=False),
    taps=[1, 3, 5, 7],
    target=dict(type='HOGTarget', nbins=9, cell_sizes=(2, 4, 8, 16)),
    decoder=dict(dims=64, depth=1, num_heads=4),
    mask_ratio=0.75,
)
# the mask is drawn in the data pipeline (a loader worker)
train_pipeline = [
    dict(type='Resize', size=64, interpolation='bicubic'),
    dict(type='RandomResizedCrop', size=64, scale=(0.5, 1.0), interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='RandomMaskGenerator', input_size=64, mask_unit=8, mask_ratio=0.75),
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
epochs, warmup_epochs, base_lr, min_lr = 4, 1, 1.5e-3, 1e-5
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(lr=base_lr))
train_cfg = dict(max_epochs=epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=warmup_epochs, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=epochs - warmup_epochs, eta_min=min_lr, by_epoch=True,
         begin=warmup_epochs, end=epochs, convert_to_iter_based=True),
]
default_hooks = dict(logger=dict(interval=20), checkpoint=dict(interval=1, max_keep_ckpts=2))
