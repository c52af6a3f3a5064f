# CPU-sized counterpart of vit-base_ft_in1k.py on Fashion-MNIST: a tiny ViT (64 px, patch 8,
# width 96, depth 8, 3 heads: the arch of pretrain/localmim_vit-tiny_fmnist.py), the same recipe
# (avg pool + fc_norm, mixup/cutmix, label smoothing, AdamW with layer decay 0.65), 10 epochs.
# Without init_cfg it trains from scratch; fine-tune a pretrained encoder with
#   --cfg-options model.backbone.init_cfg.type=Pretrained model.backbone.init_cfg.checkpoint=PATH \
#                 model.backbone.init_cfg.prefix=backbone.
_base_ = ['_base_/runtime.py', '_base_/fashion_mnist.py', '_base_/finetune_schedule.py']
lr, min_lr, warmup_epochs, max_epochs = 2e-3, 1e-5, 1, 10
model = dict(
    type='localmim.ImageClassifier',
    backbone=dict(type='localmim.VisionTransformer', arch=None, img_size=64, patch_size=8, embed_dim=96,
                  depth=8, num_heads=3, pos_embed='learned', final_norm=False, drop_path_rate=0.1,
                  out_indices=(-1,)),
    num_classes=10, fc_norm=True, head_init_std=2e-5, label_smoothing=0.1,
    mixup=dict(mixup_alpha=0.8, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5, mode='batch'),
    data_preprocessor={{_base_.data_preprocessor}})
optim_wrapper = dict(type='OptimWrapper', _delete_=True,
                     constructor='localmim.LayerDecayOptimWrapperConstructor',
                     optimizer=dict(type='AdamW', lr=lr, betas=(0.9, 0.999), weight_decay=0.05),
                     paramwise_cfg=dict(layer_decay_rate=0.65))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min_ratio=min_lr / lr, by_epoch=True, begin=warmup_epochs,
         end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs)
auto_scale_lr = dict(base_batch_size=64)
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
default_hooks = dict(logger=dict(interval=20))
