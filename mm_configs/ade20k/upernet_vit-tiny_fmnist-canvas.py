# CPU-sized counterpart of upernet_localmim-vit-b_8xb2-160k_ade20k-512x512.py on the SMALL Fashion-MNIST
# canvases (64 px, 1-3 items of 32-64 px, 11 classes: _base_/fmnist_small-canvas_semantic.py), with the
# encoder of pretrain/localmim_vit-tiny_fmnist.py at its pretraining resolution (width 96, 8 blocks,
# patch 8, 8x8 tokens: no position-table resampling): taps at blocks 1, 3, 5, 7 (as 1, 3, 9, 11 of
# ViT-B) into a 4-level pyramid at ViT-B's strides 4, 8, 16, 32 (x2 deconv, identity, 2x2 and 4x4 max
# pool of the stride-8 grid: the x4 level of patch 16 would be stride 2 here, which doubles the step
# for no gain), relative position bias and layer scale, UperHead (64 channels) + FCN auxiliary head
# (0.4), BN instead of SyncBN, layer decay 0.65, whole-image test. AdamW 2e-3: the canvas schedule's
# 4e-4 learns the head too slowly in a few hundred iterations.
# Why small canvases (measured 2026-12-05, 2 cores, the demo's 360-iteration encoders): on the
# 128 px canvases (items 28-96 px) UperNet paints every item with one class for the first ~600
# iterations at 0.35-0.45 s each and the encoders do not separate (1000 iterations: 19.7 LocalMIM
# against 18.7 random init); here an iteration takes 0.17 s and after 600 iterations LocalMIM
# reaches 26.5 mIoU against 18.1 from random init (1200 iterations: 39.7 against 34.3), with
# layer decay 0.9 instead of 0.65 random init catches up (25.3 both after 800 iterations).
# Data: FMNIST_SMALL_CANVAS_ROOT=DIR (python tools/make_fmnist_detection.py --out DIR --canvas-size 64
#   --item-size 32 64 --num-items 1 3) or override {train,val,test}_dataloader.dataset.data_root.
_base_ = ['mmseg::_base_/models/upernet_beit.py', '_base_/fmnist_small-canvas_semantic.py',
          '_base_/fmnist_canvas_schedule.py']
crop_size = _base_.crop_size  # the small canvases' 64 px: the encoder's pretraining resolution
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        _delete_=True,
        type='localmim.VisionTransformer', arch=None, img_size=crop_size[0], patch_size=8, embed_dim=96,
        depth=8, num_heads=3, pos_embed='learned', out_indices=(1, 3, 5, 7), final_norm=False,
        rel_pos_bias=True, init_values=1.0, drop_path_rate=0.1),
    neck=dict(
        _delete_=True,
        type='localmim.SimpleFeaturePyramid', in_channels=96, scales=(2, 1, 0.5, 0.25), keep_channels=True,
        pool='max', norm_cfg=norm_cfg),
    decode_head=dict(in_channels=[96, 96, 96, 96], channels=64, num_classes=11, norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=96, in_index=2, channels=32, num_classes=11, norm_cfg=norm_cfg),
    test_cfg=dict(mode='whole'))
optim_wrapper = dict(constructor='localmim.LayerDecayOptimWrapperConstructor', optimizer=dict(lr=2e-3),
                     paramwise_cfg=dict(layer_decay_rate=0.65))
