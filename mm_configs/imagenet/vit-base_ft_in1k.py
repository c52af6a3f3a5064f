# ViT-B/16 ImageNet-1k fine-tuning of a LocalMIM (1600-epoch) pretrained encoder: 100 epochs,
# batch 1024, lr 2e-3, min lr 1e-5, layer decay 0.65, wd 0.05, drop path 0.1, warmup 20,
# global average pooling + fc_norm, mixup 0.8 / cutmix 1.0, label smoothing 0.1.
# For a 100-epoch pretrain the release uses lr 4e-3, layer decay 0.75, min lr 1e-6.
# Pretrained weights: a converted checkpoint (tools/convert_checkpoint.py) with backbone.* keys;
# override with --cfg-options model.backbone.init_cfg.checkpoint=PATH.
_base_ = ['_base_/runtime.py', '_base_/imagenet_finetune.py', '_base_/finetune_schedule.py']
pretrained = 'checkpoints/localmim_vit-base_pretrain_converted.pth'
model = dict(
    type='localmim.ImageClassifier',
    backbone=dict(type='localmim.VisionTransformer', arch='base', img_size=224, pos_embed='learned',
                  final_norm=False, drop_path_rate=0.1, out_indices=(-1,),
                  init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    num_classes=1000, fc_norm=True, head_init_std=2e-5, label_smoothing=0.1,
    mixup=dict(mixup_alpha=0.8, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5, mode='batch'),
    data_preprocessor={{_base_.data_preprocessor}})
