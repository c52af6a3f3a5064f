# CPU-sized counterpart of mask-rcnn_localmim-swin-b_fpn_1x_coco.py on the Fashion-MNIST canvases
# (128 px), with the encoder of pretrain/swin_localmim-tiny_fmnist.py (width 32, depths 2-2-2-2,
# window 4): FPN (64 channels), mmdet's Swin AdamW rules (no weight decay on norms and relative
# position tables).
# Data: FMNIST_CANVAS_ROOT=DIR (python tools/make_fmnist_detection.py --out DIR), or override
#   {train,val,test}_dataloader.dataset.data_root AND {val,test}_evaluator.ann_file.
_base_ = ['_base_/mask-rcnn_small-heads.py', '_base_/fmnist_canvas_instance.py',
          '_base_/fmnist_canvas_schedule.py']
model = dict(
    backbone=dict(
        _delete_=True,
        type='localmim.SwinTransformer', arch=None, img_size=128, embed_dim=32, depths=(2, 2, 2, 2),
        num_heads=(1, 2, 4, 8), window_size=4, drop_path_rate=0.1, out_indices=(0, 1, 2, 3)),
    neck=dict(in_channels=[32, 64, 128, 256], out_channels=64))
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={
    'relative_position_bias_table': dict(decay_mult=0.), 'norm': dict(decay_mult=0.)}))
auto_scale_lr = dict(enable=False, base_batch_size=4)
