# Any stock mmseg config takes a LocalMIM backbone by replacing the backbone dict (with its
# init_cfg); the heads' input widths follow the backbone's. Here: mmseg's ResNet-50 UperNet on
# ADE20K (160k iterations) with a LocalMIM Swin-B. Everything else (heads, data, SGD schedule) is
# mmseg's, unchanged. The inherited model.pretrained ('open-mmlab://resnet50_v1c', meant for the
# ResNet) is ignored by our backbones with a warning; the weights come from init_cfg, and
# pretrained=None keeps the log quiet. Transformers usually want AdamW: see
# upernet_localmim-swin-b_8xb2-160k_ade20k-512x512.py for the full recipe.
_base_ = 'mmseg::upernet/upernet_r50_4xb4-160k_ade20k-512x512.py'
model = dict(
    pretrained=None,
    backbone=dict(
        _delete_=True,  # drop the ResNet's own keys
        type='localmim.SwinTransformer', arch='base', out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/localmim_swin-base_pretrain_converted.pth',
                      prefix='backbone.')),
    decode_head=dict(in_channels=[128, 256, 512, 1024]),
    auxiliary_head=dict(in_channels=512))
