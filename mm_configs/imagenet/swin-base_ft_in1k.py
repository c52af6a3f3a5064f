# Swin-B ImageNet-1k fine-tuning (LocalMIM 400-epoch pretrain): batch 1024, lr 4e-3 (5e-3 after a
# 100-epoch pretrain), layer decay 0.9 (over the backbone's 26 depth units), drop path 0.1,
# 100 epochs, warmup 20, min lr 2.5e-7; final norm + global average pool, no fc_norm;
# same augmentation as ViT. The backbone (localmim.SwinTransformer) supplies get_layer_depth.
_base_ = ['_base_/runtime.py', '_base_/imagenet_finetune.py', '_base_/finetune_schedule.py']
lr, min_lr, warmup_epochs, max_epochs = 4e-3, 2.5e-7, 20, 100
pretrained = 'checkpoints/localmim_swin-base_pretrain_converted.pth'
model = dict(
    type='localmim.ImageClassifier',
    backbone=dict(type='localmim.SwinTransformer', arch='base', img_size=224, window_size=7,
                  drop_path_rate=0.1, out_indices=(3,),
                  init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    num_classes=1000, in_channels=1024, fc_norm=False, head_init_std=0.02, label_smoothing=0.1,
    mixup=dict(mixup_alpha=0.8, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5, mode='batch'),
    data_preprocessor={{_base_.data_preprocessor}})
optim_wrapper = dict(optimizer=dict(lr=lr), paramwise_cfg=dict(layer_decay_rate=0.9))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min_ratio=min_lr / lr, by_epoch=True, begin=warmup_epochs,
         end=max_epochs, convert_to_iter_based=True),
]
