# LocalMIM Swin-B (patch 4, window 7): masked tokens are dropped (one mask per batch on 7x7 units of
# 32 px, 37 of 49 masked). Taps at the end of every stage, after the next stage's patch merging for
# stages 0-2 (256-d @ 28x28, 512 @ 14x14, 1024 @ 7x7, 1024 @ 7x7), predict HOG (18 bins, one frozen
# random Sobel bias per scale, as the release's four HOG modules) at 8, 16, 32 and 32 px cells through
# one-block decoders of widths 64/128/128/128 ending in a Linear (xavier weight, zero bias).
model = dict(
    type='LocalMIM',
    data_preprocessor=dict(type='ImgDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], bgr_to_rgb=False,  # images load as RGB
                           non_blocking=True),
    encoder=dict(type='SwinTransformer', arch='base', img_size=224, window_size=7, drop_path_rate=0.,
                 final_norm=False),  # tap norms instead
    taps=[0, 1, 2, 3],
    target=dict(type='HOGTarget', nbins=18, cell_sizes=(8, 16, 32, 32), bias='per_scale'),
    decoder=dict(dims=(64, 128, 128, 128), depth=1, num_heads=4, pred_layer='linear'),
    mask_ratio=0.75,
    mask_unit=32,
    mask_per_sample=False,
)
