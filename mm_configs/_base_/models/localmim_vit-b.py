# LocalMIM ViT-B/16: taps after blocks 1, 3, 9, 11 predict HOG at 4, 8, 16 and 32 px cells.
model = dict(
    type='LocalMIM',
    data_preprocessor=dict(type='ImgDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], bgr_to_rgb=False,  # images load as RGB
                           non_blocking=True),
    encoder=dict(type='VisionTransformer', arch='base', img_size=224, final_norm=False),  # tap norms instead
    taps=[1, 3, 9, 11],
    target=dict(type='HOGTarget', nbins=9, cell_sizes=(4, 8, 16, 32)),
    decoder=dict(dims=256, depth=1, num_heads=8),
    mask_ratio=0.75,
)
