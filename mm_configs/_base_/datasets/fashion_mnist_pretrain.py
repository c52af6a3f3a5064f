# Fashion-MNIST (Debian package dataset-fashion-mnist) upscaled to 64 px for CPU-sized pretraining.
data_root = '/usr/share/datasets/fashion-mnist'
img_size = 64
train_pipeline = [
    dict(type='Resize', size=img_size, interpolation='bicubic'),
    dict(type='RandomResizedCrop', size=img_size, scale=(0.5, 1.0), interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=64,
    num_workers=2,
    persistent_workers=True,
    drop_last=True,
    sampler=dict(type='SeededSampler', shuffle=True),  # augmentation repeats exactly on resume
    dataset=dict(type='FashionMNIST', data_root=data_root, split='train', pipeline=train_pipeline),
)
