# ImageNet-1k for pretraining: RandomResizedCrop(224, scale 0.2-1, bicubic) + horizontal flip only.
# The crop is resized as torchvision does on PIL images (antialiased bicubic), like the release;
# backend='torch' in the crop gives the same filter about 5x faster (within a grey level of PIL).
# LoadImage(lazy=True): the crop decodes the JPEG, at 1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling)
# when the crop is at least 2x the output on both sides; otherwise exactly the full decode.
# tools/benchmark_data.py measures these options against torchvision's pipeline.
# The model configs add their RandomMaskGenerator before PackInputs (masks drawn in the loader
# workers, see localmim/datasets/masking.py).
# Set the root with --cfg-options train_dataloader.dataset.data_root=/path/to/imagenet
data_root = 'data/imagenet/'
train_pipeline = [
    dict(type='LoadImage', lazy=True),  # decoded by the crop, at 1/2-1/8 scale when it is >= 2x the output
    dict(type='RandomResizedCrop', size=224, scale=(0.2, 1.0), interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=256,  # per GPU
    num_workers=10,
    persistent_workers=True,
    pin_memory=True,
    drop_last=True,
    sampler=dict(type='SeededSampler', shuffle=True),  # augmentation repeats exactly on resume
    dataset=dict(type='ImageNet', data_root=data_root, split='train', pipeline=train_pipeline),
)
