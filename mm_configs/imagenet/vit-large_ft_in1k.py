# ViT-L/16 ImageNet-1k fine-tuning (LocalMIM 800-epoch pretrain): 50 epochs, warmup 5, lr 3e-3,
# layer decay 0.75, drop path 0.2, otherwise as ViT-B.
_base_ = ['vit-base_ft_in1k.py']
lr, min_lr, warmup_epochs, max_epochs = 3e-3, 1e-5, 5, 50
pretrained = 'checkpoints/localmim_vit-large_pretrain_converted.pth'
model = dict(backbone=dict(arch='large', drop_path_rate=0.2,
                           init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')))
optim_wrapper = dict(optimizer=dict(lr=lr), paramwise_cfg=dict(layer_decay_rate=0.75))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min_ratio=min_lr / lr, by_epoch=True, begin=warmup_epochs,
         end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs)
