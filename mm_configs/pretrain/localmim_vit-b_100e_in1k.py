# LocalMIM ViT-B/16, 100 epochs (10 warm-up): the release's short schedule.
_base_ = './localmim_vit-b_1600e_in1k.py'
epochs, warmup_epochs = 100, 10
train_cfg = dict(max_epochs=epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=warmup_epochs, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=epochs - warmup_epochs, eta_min=1e-6, by_epoch=True,
         begin=warmup_epochs, end=epochs, convert_to_iter_based=True),
]
