# CPU-sized counterpart of upernet_localmim-vit-b_8xb2-160k_ade20k-512x512.py on the Fashion-MNIST
# canvases (128 px, 11 classes), with the encoder of pretrain/localmim_vit-tiny_fmnist.py (width 96,
# 8 blocks, patch 8): taps at blocks 1, 3, 5, 7 (as 1, 3, 9, 11 of ViT-B) into a 4-level pyramid at
# ViT-B's strides 4, 8, 16, 32 (x2 deconv, identity, 2x2 and 4x4 max pool of the stride-8 grid: the
# x4 level of patch 16 would be stride 2 here, which doubles the step for no gain; 1 thread, batch 4:
# 0.35 s against 0.70 s per iteration, and after 300 iterations every item is painted with one class
# either way), relative position bias and layer scale, UperHead (64 channels) + FCN auxiliary head (0.4), BN
# instead of SyncBN, layer decay 0.65, sliding-window test 128 / stride 85. AdamW 1e-3 (the
# canvas schedule's 4e-4 learns the head too slowly in a few hundred iterations: 10.4 mIoU after
# 100 iterations at 4e-4, 11.4 after 200 at 1e-3, 13.8 after 400).
# Data: FMNIST_CANVAS_ROOT=DIR (python tools/make_fmnist_detection.py --out DIR) or override
#   {train,val,test}_dataloader.dataset.data_root.
_base_ = ['mmseg::_base_/models/upernet_beit.py', '_base_/fmnist_canvas_semantic.py',
          '_base_/fmnist_canvas_schedule.py']
crop_size = (128, 128)
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
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(85, 85)))
optim_wrapper = dict(constructor='localmim.LayerDecayOptimWrapperConstructor', optimizer=dict(lr=1e-3),
                     paramwise_cfg=dict(layer_decay_rate=0.65))
