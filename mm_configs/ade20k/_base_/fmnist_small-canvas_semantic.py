# Fashion-MNIST SMALL canvases for semantic segmentation: 64x64, 1-3 items of 32-64 px, i.e. items at
# the scale pretrain/localmim_vit-tiny_fmnist.py saw them (64 px frames), where the tiny ViT's frozen
# features recognise them (item-pooled linear probe, 600 training items: 70% at 64 px, 52% at 32-64 px,
# 44% on the 128 px canvases' 28-96 px items). Otherwise fmnist_canvas_semantic.py at half the size,
# with a narrower resize range (0.75-1.5: the items stay near the pretraining scale):
#   python tools/make_fmnist_detection.py --out data/fmnist_canvas_64 --canvas-size 64 --item-size 32 64 --num-items 1 3
# Root: FMNIST_SMALL_CANVAS_ROOT=/path or --cfg-options.
_base_ = 'fmnist_canvas_semantic.py'
data_root = '{{$FMNIST_SMALL_CANVAS_ROOT:data/fmnist_canvas_64}}'
crop_size = (64, 64)
small_canvas = dict(RandomResize=dict(scale=(256, 64), ratio_range=(0.75, 1.5)),
                    RandomCrop=dict(crop_size=crop_size), Resize=dict(scale=(256, 64)))
train_pipeline = [dict(step, **small_canvas.get(step['type'], {})) for step in _base_.train_pipeline]
test_pipeline = [dict(step, **small_canvas.get(step['type'], {})) for step in _base_.test_pipeline]
train_dataloader = dict(dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
