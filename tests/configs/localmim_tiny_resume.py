# The real LocalMIM pretraining recipe (mm_configs/pretrain/localmim_vit-tiny_fmnist.py) shrunk for
# the resume / reliability tests: 8 Fashion-MNIST images at 32 px, patch 8 (4x4 tokens), a 4-block
# ViT of width 32 tapped after every block (HOG at 2, 4, 8 and 16 px cells), 8 iterations of
# batch 4 with a checkpoint every 2, per-iteration logs, fixed seeds and deterministic kernels.
_base_ = '../../mm_configs/pretrain/localmim_vit-tiny_fmnist.py'
img_size = 32
model = dict(
    encoder=dict(img_size=img_size, patch_size=8, embed_dim=32, depth=4, num_heads=2),
    taps=[0, 1, 2, 3],
    target=dict(cell_sizes=(2, 4, 8, 16)),
    decoder=dict(dims=16, depth=1, num_heads=2),
)
train_pipeline = [
    dict(type='Resize', size=img_size, interpolation='bicubic'),
    dict(type='RandomResizedCrop', size=img_size, scale=(0.5, 1.0), interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=1,
    sampler=dict(_delete_=True, type='InfiniteSampler', shuffle=True),
    dataset=dict(num_samples=8, pipeline=train_pipeline),
)
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(lr=1e-3))
auto_scale_lr = dict(enable=False)
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=8)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=3),
    dict(type='CosineAnnealingLR', T_max=5, eta_min=1e-4, by_epoch=False, begin=3, end=8),
]
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(by_epoch=False, interval=2, max_keep_ckpts=-1))
log_processor = dict(by_epoch=False, window_size=1)
randomness = dict(seed=0, diff_rank_seed=True, deterministic=True)
