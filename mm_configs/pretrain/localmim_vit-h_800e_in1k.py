# LocalMIM ViT-H/14 with the ViT-L recipe. Patch 14 gives a 16x16 grid at 224 px; the release's
# 4 px cells (x4 of a 14 px patch) do not tile it, so the fine taps predict 7 px cells (x2):
# cells 7, 7, 14, 28 (our adaptation; the release published no ViT-H result).
_base_ = './localmim_vit-l_800e_in1k.py'
model = dict(
    encoder=dict(arch='huge'),
    taps=[1, 3, 29, 31],
    target=dict(cell_sizes=(7, 7, 14, 28)),
)

# the mask is drawn in the data pipeline (a loader worker), on the 14 px patch grid
train_pipeline = [
    dict(type='LoadImage', lazy=True),  # JPEG bytes: the crop decodes them (simplejpeg; 1/2-1/8 scale if >= 2x)
    dict(type='RandomResizedCrop', size=224, scale=(0.2, 1.0), interpolation='bicubic', backend='torch'),
    dict(type='RandomHorizontalFlip', prob=0.5),
    dict(type='RandomMaskGenerator', input_size=224, mask_unit=14, mask_ratio=0.75),
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
