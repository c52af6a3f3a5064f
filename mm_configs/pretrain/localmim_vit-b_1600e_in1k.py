# LocalMIM ViT-B/16, HOG (9 bins), 1600 epochs on ImageNet-1k: the release's recipe.
# Total batch 2048 (8 GPUs x 256); lr = 2e-4 * 2048 / 256 through auto_scale_lr.
_base_ = [
    '../_base_/models/localmim_vit-b.py',
    '../_base_/datasets/imagenet_pretrain.py',
    '../_base_/schedules/pretrain_adamw.py',
    '../_base_/default_runtime.py',
]
epochs, warmup_epochs, base_lr, min_lr = 1600, 40, 2e-4, 1e-6

optim_wrapper = dict(optimizer=dict(lr=base_lr))
train_cfg = dict(max_epochs=epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=warmup_epochs, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=epochs - warmup_epochs, eta_min=min_lr, by_epoch=True,
         begin=warmup_epochs, end=epochs, convert_to_iter_based=True),
]
