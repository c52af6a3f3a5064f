# Fashion-MNIST canvas instances (tools/make_fmnist_detection.py; 10 classes, 128x128 canvases),
# COCO-style evaluation with mmdet's CocoMetric (bbox + segm, pycocotools).
# Root: FMNIST_CANVAS_ROOT=/path (holding images/ and annotations/) or --cfg-options.
dataset_type = 'localmim.FashionCocoDataset'
data_root = '{{$FMNIST_CANVAS_ROOT:data/fmnist_canvas}}'
image_size = (128, 128)
backend_args = None
pad_val = dict(img=(103.53, 116.28, 123.675), masks=0)  # mean colour (BGR): 0 after normalisation
# large-scale jitter scaled to the canvas: resize 0.5-1.5, crop and pad to 128
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomResize', scale=image_size, ratio_range=(0.5, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_type='absolute_range', crop_size=image_size, recompute_bbox=True,
         allow_negative_crop=True),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1e-2, 1e-2)),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Pad', size=image_size, pad_val=pad_val),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='Pad', size=image_size, pad_val=pad_val),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=4, num_workers=2, persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    batch_sampler=dict(type='AspectRatioBatchSampler'),
    dataset=dict(type=dataset_type, data_root=data_root, ann_file='annotations/instances_training.json',
                 data_prefix=dict(img='images/training/'), filter_cfg=dict(filter_empty_gt=True),
                 pipeline=train_pipeline, backend_args=backend_args))
val_dataloader = dict(
    batch_size=4, num_workers=2, persistent_workers=False, drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, ann_file='annotations/instances_validation.json',
                 data_prefix=dict(img='images/validation/'), test_mode=True, pipeline=test_pipeline,
                 backend_args=backend_args))
test_dataloader = val_dataloader
val_evaluator = dict(type='CocoMetric', ann_file=data_root + '/annotations/instances_validation.json',
                     metric=['bbox', 'segm'], classwise=True, format_only=False, backend_args=backend_args)
test_evaluator = val_evaluator
