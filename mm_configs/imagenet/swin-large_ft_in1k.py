# Swin-L ImageNet-1k fine-tuning (LocalMIM 800-epoch pretrain): batch 2048, lr 2e-3, layer decay 0.8,
# drop path 0.3, window 14. Epochs/warmup/min lr are not given by the release: Swin-B's are kept.
_base_ = ['swin-base_ft_in1k.py']
lr, min_lr, warmup_epochs, max_epochs = 2e-3, 2.5e-7, 20, 100
pretrained = 'checkpoints/localmim_swin-large_pretrain_converted.pth'
model = dict(
    backbone=dict(arch='large', window_size=14, drop_path_rate=0.3,
                  init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    in_channels=1536)
train_dataloader = dict(batch_size=128)  # per GPU; 16 GPUs -> the recipe's total 2048
optim_wrapper = dict(optimizer=dict(lr=lr), paramwise_cfg=dict(layer_decay_rate=0.8))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min_ratio=min_lr / lr, by_epoch=True, begin=warmup_epochs,
         end=max_epochs, convert_to_iter_based=True),
]
auto_scale_lr = dict(base_batch_size=2048)
