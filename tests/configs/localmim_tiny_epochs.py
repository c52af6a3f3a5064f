# The shipped CPU pretraining recipe (mm_configs/pretrain/localmim_vit-tiny_fmnist.py: epoch-based
# loop, 2 persistent loader workers, localmim.SeededSampler, IterationSeedHook) with the tiny model
# of localmim_tiny_resume.py on 16 Fashion-MNIST images at 32 px: 4 iterations of batch 4 per epoch
# in one process (2 per rank with 2), 3 epochs, a checkpoint at the end of every epoch.
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
    dict(type='RandomMaskGenerator', input_size=img_size, mask_unit=8, mask_ratio=0.75),  # masks resume too
    dict(type='PackInputs'),
]
train_dataloader = dict(batch_size=4, dataset=dict(num_samples=16, pipeline=train_pipeline))
auto_scale_lr = dict(enable=False)
train_cfg = dict(max_epochs=3)
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=1, max_keep_ckpts=-1))
log_processor = dict(window_size=1)
randomness = dict(seed=0, diff_rank_seed=True, deterministic=True)
env_cfg = dict(dist_cfg=dict(backend='gloo', timeout=120))
