# LocalMIM ViT-B/16, HOG (9 bins), 1600 epochs on ImageNet-1k: the release's recipe.
# Total batch 2048 (8 GPUs x 256); lr = 2e-4 * 2048 / 256 through auto_scale_lr.
_base_ = [
    '../_base_/models/localmim_vit-b.py',
    '../_base_/datasets/imagenet_pretrain.py',
    '../_base_/schedules/pretrain_adamw.py',
    '../_base_/default_runtime.py',
]

# the mask is drawn in the data pipeline (a loader worker), one per image on the patch grid
train_pipeline = [
    dict(type='LoadImage', lazy=True),  # JPEG bytes: the crop decodes them (simplejpeg; 1/2-1/8 scale if >= 2x)
    dict(type='RandomResizedCrop', size=224, scale=(0.2, 1.0), interpolation='bicubic', backend='torch'),
    dict(type='RandomHorizontalFlip', prob=0.5),
    dict(type='RandomMaskGenerator', input_size=224, mask_unit=16, mask_ratio=0.75),
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
epochs, warmup_epochs, base_lr, min_lr = 1600, 40, 2e-4, 1e-6

optim_wrapper = dict(optimizer=dict(lr=base_lr))
train_cfg = dict(max_epochs=epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=warmup_epochs, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=epochs - warmup_epochs, eta_min=min_lr, by_epoch=True,
         begin=warmup_epochs, end=epochs, convert_to_iter_based=True),
]
