# Fashion-MNIST SMALL canvases for instance segmentation: 64x64, 1-3 items of 32-64 px, i.e. items at
# the scale pretrain/localmim_vit-tiny_fmnist.py saw them (64 px frames), the same canvases as
# ade20k/_base_/fmnist_small-canvas_semantic.py. Otherwise fmnist_canvas_instance.py at half the size,
# with a narrower resize range (0.75-1.5: the items stay near the pretraining scale):
#   python tools/make_fmnist_detection.py --out data/fmnist_canvas_64 --canvas-size 64 --item-size 32 64 --num-items 1 3
# Root: FMNIST_SMALL_CANVAS_ROOT=/path or --cfg-options.
_base_ = 'fmnist_canvas_instance.py'
data_root = '{{$FMNIST_SMALL_CANVAS_ROOT:data/fmnist_canvas_64}}'
image_size = (64, 64)
small_canvas = dict(RandomResize=dict(scale=image_size, ratio_range=(0.75, 1.5)),
                    RandomCrop=dict(crop_size=image_size), Resize=dict(scale=image_size), Pad=dict(size=image_size))
train_pipeline = [dict(step, **small_canvas.get(step['type'], {})) for step in _base_.train_pipeline]
test_pipeline = [dict(step, **small_canvas.get(step['type'], {})) for step in _base_.test_pipeline]
train_dataloader = dict(dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + '/annotations/instances_validation.json')
test_evaluator = val_evaluator
