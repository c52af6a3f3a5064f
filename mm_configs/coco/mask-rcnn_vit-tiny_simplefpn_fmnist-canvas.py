# CPU-sized counterpart of mask-rcnn_localmim-vit-b_simplefpn_lsj-1024-100e_coco.py on the SMALL
# Fashion-MNIST canvases (64 px, 1-3 items of 32-64 px: _base_/fmnist_small-canvas_instance.py), with
# the encoder of pretrain/localmim_vit-tiny_fmnist.py at its pretraining resolution (width 96, 8 blocks,
# patch 8 -> 8x8 grid, no position-table resampling): 4x4 windows with global blocks 1, 3, 5, 7 (the
# last of each quarter, as 2, 5, 8, 11 of ViT-B), relative position bias; simple pyramid from the
# stride-8 map (strides 4, 8, 16 + 32 for the RPN; 64 channels, LayerNorm), layer decay 0.7.
# Sized for a CPU rather than copied from ViTDet: the items are 32-64 px, so the stride-2 level is
# dropped, and the RoI heads are mmdet's light ones (2-fc box head, 2-conv mask head, 32 sampled RoIs
# per canvas for at most 3 items): the ViTDet heads (4 convs + 1 fc, 4-conv mask head, 64 RoIs) cost
# about 2x per iteration for no gain in a short run. AdamW 1e-3: the heads start from scratch and the
# run is a few hundred iterations (2e-3: no better, 34.8 bbox AP against 35.4 below).
# Why small canvases (measured 2026-12-05, 2 cores, the demo's 360-iteration encoders, 100 validation
# canvases): an iteration takes 0.23 s here against 0.4 s on the 128 px canvases (2-5 items of
# 28-96 px), and pretraining separates from random init. After 600 iterations here: bbox / mask AP
# 35.4 / 41.2, 38.6 / 44.7, 35.7 / 42.3 (LocalMIM, seeds 0-2), 31.8 / 36.4, 33.7 / 38.2 (random init,
# seeds 0-1), 38.2 / 43.5 (global-only). After 400 iterations random init still leads (32.3 / 37.7
# against 30.4 / 38.3). On the 128 px canvases after 300 iterations (the same wall clock): 27.7 / 32.9
# (LocalMIM), 22.1 / 26.4 (random init, measured once).
# Data: FMNIST_SMALL_CANVAS_ROOT=DIR (python tools/make_fmnist_detection.py --out DIR --canvas-size 64
#   --item-size 32 64 --num-items 1 3), or override {train,val,test}_dataloader.dataset.data_root AND
#   {val,test}_evaluator.ann_file.
# Fine-tune a pretrained encoder: --cfg-options model.backbone.init_cfg.type=Pretrained
#   model.backbone.init_cfg.checkpoint=PATH model.backbone.init_cfg.prefix=backbone.
_base_ = ['_base_/mask-rcnn_small-heads.py', '_base_/fmnist_small-canvas_instance.py',
          '_base_/fmnist_canvas_schedule.py']
norm_cfg = dict(type='localmim.LN2d', eps=1e-6)
strides = [4, 8, 16]  # the pyramid's levels from the stride-8 map
model = dict(
    backbone=dict(
        _delete_=True,
        type='localmim.VisionTransformer', arch=None, img_size=_base_.image_size[0], patch_size=8,
        embed_dim=96, depth=8, num_heads=3, pos_embed='learned', window_size=4, global_blocks=(1, 3, 5, 7),
        rel_pos_bias=True, drop_path_rate=0.1, out_indices=(-1,), final_norm=False),
    neck=dict(
        _delete_=True,
        type='localmim.SimpleFeaturePyramid', in_channels=96, out_channels=64, scales=(2, 1, 0.5),
        norm_cfg=norm_cfg, num_outs=4),
    rpn_head=dict(num_convs=2, anchor_generator=dict(strides=strides + [32])),
    roi_head=dict(
        bbox_roi_extractor=dict(featmap_strides=strides),
        mask_roi_extractor=dict(featmap_strides=strides),
        mask_head=dict(num_convs=2)),
    train_cfg=dict(rcnn=dict(sampler=dict(num=32))))
optim_wrapper = dict(constructor='localmim.LayerDecayOptimWrapperConstructor',
                     optimizer=dict(lr=1e-3, weight_decay=0.1), paramwise_cfg=dict(layer_decay_rate=0.7))
auto_scale_lr = dict(enable=False, base_batch_size=4)
