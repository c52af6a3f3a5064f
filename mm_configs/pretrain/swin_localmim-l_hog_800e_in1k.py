# LocalMIM Swin-L (embed 192, heads 6/12/24/48, window 14: the last stage's 7x7 grid clips it to 7),
# HOG 18 bins + bias, 800 epochs (40 warm-up), total batch 4096 (16 GPUs x 256), base lr 1e-4, min lr 0.
_base_ = './swin_localmim-b_hog_400e_in1k.py'
model = dict(encoder=dict(arch='large', window_size=14))
epochs, warmup_epochs, base_lr, min_lr = 800, 40, 1e-4, 0.
optim_wrapper = dict(optimizer=dict(lr=base_lr))
train_cfg = dict(max_epochs=epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=warmup_epochs, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=epochs - warmup_epochs, eta_min=min_lr, by_epoch=True,
         begin=warmup_epochs, end=epochs, convert_to_iter_based=True),
]
