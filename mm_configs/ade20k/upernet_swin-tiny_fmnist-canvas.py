# CPU-sized counterpart of upernet_localmim-swin-b_8xb2-160k_ade20k-512x512.py on the Fashion-MNIST
# canvases (128 px, 11 classes), with the encoder of pretrain/swin_localmim-tiny_fmnist.py (width
# 32, depths 2-2-2-2, window 4): UperHead (64 channels) + FCN auxiliary head (0.4), BN instead of
# SyncBN, mmseg's Swin AdamW rules (no weight decay on norms and relative position tables),
# whole-image test.
# Data: FMNIST_CANVAS_ROOT=DIR (python tools/make_fmnist_detection.py --out DIR), or override
#   {train,val,test}_dataloader.dataset.data_root.
_base_ = ['mmseg::_base_/models/upernet_swin.py', '_base_/fmnist_canvas_semantic.py',
          '_base_/fmnist_canvas_schedule.py']
crop_size = (128, 128)
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        _delete_=True,
        type='localmim.SwinTransformer', arch=None, img_size=crop_size[0], embed_dim=32, depths=(2, 2, 2, 2),
        num_heads=(1, 2, 4, 8), window_size=4, drop_path_rate=0.1, out_indices=(0, 1, 2, 3)),
    decode_head=dict(in_channels=[32, 64, 128, 256], channels=64, num_classes=11, norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=128, channels=32, num_classes=11, norm_cfg=norm_cfg))
optim_wrapper = dict(optimizer=dict(lr=2e-4, weight_decay=0.01), paramwise_cfg=dict(custom_keys={
    'relative_position_bias_table': dict(decay_mult=0.), 'norm': dict(decay_mult=0.)}))
