# CPU-sized counterpart of mask-rcnn_localmim-vit-b_simplefpn_lsj-1024-100e_coco.py on the
# Fashion-MNIST canvases (128 px), with the encoder of pretrain/localmim_vit-tiny_fmnist.py (width 96,
# 8 blocks, patch 8 -> 16x16 grid): 4x4 windows with global blocks 1, 3, 5, 7 (the last of each
# quarter, as 2, 5, 8, 11 of ViT-B), relative position bias; simple pyramid from the stride-8 map
# (strides 2-16 + 32 for the RPN; 64 channels, LayerNorm), 2-conv RPN, 4-conv + 1-fc box head and
# mask head with LayerNorm, layer decay 0.7.
# Data: FMNIST_CANVAS_ROOT=DIR (python tools/make_fmnist_detection.py --out DIR), or override
#   {train,val,test}_dataloader.dataset.data_root AND {val,test}_evaluator.ann_file.
# Fine-tune a pretrained encoder: --cfg-options model.backbone.init_cfg.type=Pretrained
#   model.backbone.init_cfg.checkpoint=PATH model.backbone.init_cfg.prefix=backbone.
_base_ = ['_base_/mask-rcnn_small-heads.py', '_base_/fmnist_canvas_instance.py',
          '_base_/fmnist_canvas_schedule.py']
norm_cfg = dict(type='localmim.LN2d', eps=1e-6)
strides = [2, 4, 8, 16]  # the pyramid's levels from the stride-8 map
model = dict(
    backbone=dict(
        _delete_=True,
        type='localmim.VisionTransformer', arch=None, img_size=128, patch_size=8, embed_dim=96, depth=8,
        num_heads=3, pos_embed='learned', window_size=4, global_blocks=(1, 3, 5, 7), rel_pos_bias=True,
        drop_path_rate=0.1, out_indices=(-1,), final_norm=False),
    neck=dict(
        _delete_=True,
        type='localmim.SimpleFeaturePyramid', in_channels=96, out_channels=64, scales=(4, 2, 1, 0.5),
        norm_cfg=norm_cfg, num_outs=5),
    rpn_head=dict(num_convs=2, anchor_generator=dict(strides=strides + [32])),
    roi_head=dict(
        bbox_roi_extractor=dict(featmap_strides=strides),
        bbox_head=dict(type='Shared4Conv1FCBBoxHead', conv_out_channels=64, norm_cfg=norm_cfg),
        mask_roi_extractor=dict(featmap_strides=strides),
        mask_head=dict(norm_cfg=norm_cfg)))
optim_wrapper = dict(constructor='localmim.LayerDecayOptimWrapperConstructor',
                     optimizer=dict(weight_decay=0.1), paramwise_cfg=dict(layer_decay_rate=0.7))
auto_scale_lr = dict(enable=False, base_batch_size=4)
