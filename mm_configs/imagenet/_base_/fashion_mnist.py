# Fashion-MNIST stand-in for ImageNet (CPU): 28x28 grey images, replicated to 3 channels,
# upscaled to 64x64 (divisible by the tiny ViT's patch 8) by timm's transforms, normalised.
data_root = '/usr/share/datasets/fashion-mnist'
mean, std = (0.286, 0.286, 0.286), (0.353, 0.353, 0.353)
# RandAugment rand-m9-mstd0.5-inc1 as the release, with the magnitude clipped at 9 (mmax9): at 10,
# timm's increasing Posterize asks Pillow >= 10 for 0 bits, which it refuses with an error.
train_pipeline = [
    dict(type='localmim.TimmTransform', input_size=64, is_training=True, scale=(0.5, 1.0), hflip=0.5,
         color_jitter=None, auto_augment='rand-m9-mstd0.5-inc1-mmax9', interpolation='bicubic', re_prob=0.25,
         re_mode='pixel', re_count=1, mean=mean, std=std),
    dict(type='localmim.PackInputs'),
]
test_pipeline = [
    dict(type='localmim.TimmTransform', input_size=64, is_training=False, crop_pct=1.0,
         interpolation='bicubic', mean=mean, std=std),
    dict(type='localmim.PackInputs'),
]
train_dataloader = dict(
    batch_size=64, num_workers=2, persistent_workers=True, drop_last=True,
    sampler=dict(type='SeededSampler', shuffle=True),  # augmentation repeats exactly on resume
    dataset=dict(type='localmim.FashionMNIST', data_root=data_root, split='train', pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=256, num_workers=2, persistent_workers=True, drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='localmim.FashionMNIST', data_root=data_root, split='test', pipeline=test_pipeline,
                 test_mode=True))
test_dataloader = val_dataloader
data_preprocessor = dict(type='ImgDataPreprocessor')
