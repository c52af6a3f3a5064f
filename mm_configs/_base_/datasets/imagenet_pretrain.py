# ImageNet-1k for pretraining: RandomResizedCrop(224, scale 0.2-1, ratio 3/4-4/3, bicubic with
# antialiasing) + horizontal flip, as the release (torchvision on PIL images) does it, ~2x faster per
# loader process (tools/benchmark_data.py):
# - LoadImage(lazy=True) only reads the file; the crop decodes the JPEG with simplejpeg (libjpeg-turbo:
#   Pillow's pixels, ~25% faster; Pillow when simplejpeg is missing), at 1/2, 1/4 or 1/8 scale
#   (libjpeg's DCT scaling) when the crop is at least 2x the output on both sides;
# - backend='torch': PIL's antialiased bicubic filter in torch (uint8 SIMD, ~5x PIL; within a grey
#   level of PIL: mean |diff| ~0.01, tests/test_transforms.py);
# - RandomHorizontalFlip: mmcv's RandomFlip draw and keys, without its per-image overhead.
# GPU decoding with NVIDIA DALI (optional extra 'dali'): train_dataloader = dict(type='localmim.DaliImageNetLoader')
# (localmim/datasets/dali.py; the same boxes, flips and masks, falls back to this CPU loader).
# The model configs add their RandomMaskGenerator before PackInputs (masks drawn in the loader
# workers, see localmim/datasets/masking.py).
# Set the root with --cfg-options train_dataloader.dataset.data_root=/path/to/imagenet
data_root = 'data/imagenet/'
train_pipeline = [
    dict(type='LoadImage', lazy=True),  # JPEG bytes: the crop decodes them (simplejpeg; 1/2-1/8 scale if >= 2x)
    dict(type='RandomResizedCrop', size=224, scale=(0.2, 1.0), interpolation='bicubic', backend='torch'),
    dict(type='RandomHorizontalFlip', prob=0.5),
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
