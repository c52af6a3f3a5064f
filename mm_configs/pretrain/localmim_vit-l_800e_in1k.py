# LocalMIM ViT-L/16, HOG with 18 bins and the frozen random "hog bias" (one per scale, as the
# release), taps after blocks 1, 3, 21, 23; 800 epochs. Total batch 4096 (16 GPUs x 256), base lr 1.5e-4.
_base_ = './localmim_vit-b_1600e_in1k.py'
model = dict(
    encoder=dict(arch='large'),
    taps=[1, 3, 21, 23],
    target=dict(nbins=18, bias='per_scale'),
)
epochs, warmup_epochs, base_lr, min_lr = 800, 40, 1.5e-4, 1e-6
optim_wrapper = dict(optimizer=dict(lr=base_lr))
train_cfg = dict(max_epochs=epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=warmup_epochs, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=epochs - warmup_epochs, eta_min=min_lr, by_epoch=True,
         begin=warmup_epochs, end=epochs, convert_to_iter_based=True),
]
