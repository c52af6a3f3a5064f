# UperNet + FCN auxiliary head with a LocalMIM Swin-B backbone on ADE20K, mmseg's Swin recipe
# (as the release): drop path 0.3, AdamW lr 6e-5, wd 0.01 (none on norms and relative position
# tables), no layer decay, 1500 linear warmup iterations then poly (power 1) to 0 at 160k
# iterations, batch 16 (8 GPUs x 2), crop 512, whole-image test.
# Everything but the backbone comes from mmseg's Swin-B UperNet config.
#
# ADE20K root: ADE20K_ROOT=/path/to/ADEChallengeData2016 or --cfg-options (see the ViT-B config);
# pretrained weights: --cfg-options model.backbone.init_cfg.checkpoint=PATH (backbone.* keys).
_base_ = 'mmseg::swin/swin-base-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py'
data_root = '{{$ADE20K_ROOT:data/ade/ADEChallengeData2016}}'
pretrained = 'checkpoints/localmim_swin-base_pretrain_converted.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='localmim.SwinTransformer', arch='base', drop_path_rate=0.3, out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    decode_head=dict(in_channels=[128, 256, 512, 1024], num_classes=150),
    auxiliary_head=dict(in_channels=512, num_classes=150))
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
auto_scale_lr = dict(enable=False, base_batch_size=16)
