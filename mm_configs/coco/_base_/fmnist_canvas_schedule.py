# CPU-sized iteration schedule for the Fashion-MNIST canvas configs: AdamW, 50 warmup
# iterations, lr x0.1 at 80% and 95% of 3000 iterations, validation every 1000.
_base_ = 'mmdet::_base_/default_runtime.py'
max_iters = 3000
optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=0.05))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=50),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters, milestones=[2400, 2850], gamma=0.1),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=1000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(logger=dict(interval=20), checkpoint=dict(by_epoch=False, interval=1000, max_keep_ckpts=1))
log_processor = dict(by_epoch=False)
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
# a fixed seed (mmdet's and mmseg's runtimes fix none): two runs of the same config agree
randomness = dict(seed=0)
