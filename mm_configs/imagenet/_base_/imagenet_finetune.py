# ImageNet-1k fine-tuning data (MAE / LocalMIM release recipe): timm's RandAugment
# rand-m9-mstd0.5-inc1, random erasing 0.25 (pixel mode), bicubic; eval resize 256 + centre crop 224.
# Images come already normalised from timm's transform, so the data preprocessor only stacks them.
data_root = 'data/imagenet'  # data_root/train/<class>/*.JPEG, data_root/val/<class>/*.JPEG
mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# RandAugment rand-m9-mstd0.5-inc1 as the release, with the magnitude clipped at 9 (mmax9): at 10,
# timm's increasing Posterize asks Pillow >= 10 for 0 bits, which it refuses with an error.
train_pipeline = [
    dict(type='localmim.LoadImage'),
    dict(type='localmim.TimmTransform', input_size=224, is_training=True, color_jitter=None,
         auto_augment='rand-m9-mstd0.5-inc1-mmax9', interpolation='bicubic', re_prob=0.25, re_mode='pixel',
         re_count=1, mean=mean, std=std),
    dict(type='localmim.PackInputs'),
]
test_pipeline = [
    dict(type='localmim.LoadImage'),
    dict(type='localmim.TimmTransform', input_size=224, is_training=False, crop_pct=224 / 256,
         interpolation='bicubic', mean=mean, std=std),
    dict(type='localmim.PackInputs'),
]
train_dataloader = dict(
    batch_size=128,  # per GPU; 8 GPUs -> the recipe's total 1024
    num_workers=10, persistent_workers=True, pin_memory=True, drop_last=True,
    sampler=dict(type='SeededSampler', shuffle=True),  # augmentation repeats exactly on resume
    dataset=dict(type='localmim.ImageNet', data_root=data_root, split='train', pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=128, num_workers=10, persistent_workers=True, pin_memory=True, drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='localmim.ImageNet', data_root=data_root, split='val', pipeline=test_pipeline,
                 test_mode=True))
test_dataloader = val_dataloader
data_preprocessor = dict(type='ImgDataPreprocessor')
