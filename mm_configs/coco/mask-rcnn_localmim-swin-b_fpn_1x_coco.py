# Mask R-CNN + FPN with a LocalMIM Swin-B backbone on COCO, mmdet's Swin recipe, 1x schedule:
# AdamW lr 1e-4, wd 0.05 (none on norms and relative position tables), 12 epochs (lr x0.1 at 8
# and 11), 1000 warmup iterations, single scale 1333x800, batch 16 (8 GPUs x 2 images).
# Everything but the backbone (and the FPN's input widths) comes from mmdet's Swin-T config.
#
# COCO root: COCO_ROOT=/path/to/coco or --cfg-options (see the ViT-B config);
# pretrained weights: --cfg-options model.backbone.init_cfg.checkpoint=PATH (backbone.* keys).
_base_ = 'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py'
data_root = '{{$COCO_ROOT:data/coco}}'
pretrained = 'checkpoints/localmim_swin-base_pretrain_converted.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='localmim.SwinTransformer', arch='base', drop_path_rate=0.3, out_indices=(0, 1, 2, 3),
        with_cp=False, init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    neck=dict(in_channels=[128, 256, 512, 1024]))
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + '/annotations/instances_val2017.json')
test_evaluator = val_evaluator
