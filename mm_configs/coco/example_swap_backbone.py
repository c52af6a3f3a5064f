# Any stock mmdet config takes a LocalMIM backbone by replacing the backbone dict (with its
# init_cfg); the neck's input widths follow the backbone's. Here: mmdet's ResNet-50 Mask R-CNN 1x
# with a LocalMIM Swin-B. Everything else (heads, data, SGD schedule) is mmdet's, unchanged.
# Transformers usually want AdamW: see mask-rcnn_localmim-swin-b_fpn_1x_coco.py for the full recipe.
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        _delete_=True,  # drop the ResNet's own keys
        type='localmim.SwinTransformer', arch='base', out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/localmim_swin-base_pretrain_converted.pth',
                      prefix='backbone.')),
    neck=dict(in_channels=[128, 256, 512, 1024]))
