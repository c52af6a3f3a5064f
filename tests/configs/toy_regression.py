# Tiny deterministic training config for the engine tests (components in tests/engine_toys.py).
custom_imports = dict(imports=['engine_toys'], allow_failed_imports=False)
default_scope = 'localmim'

model = dict(type='ToyRegressor')
train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    dataset=dict(type='ToyRegressionDataset', size=16, seed=0),
    sampler=dict(type='InfiniteSampler', shuffle=True),
    collate_fn=dict(type='default_collate'))
train_cfg = dict(type='IterBasedTrainLoop', max_iters=6, val_interval=1000)
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.1, momentum=0.9))
param_scheduler = [dict(type='LinearLR', start_factor=0.25, by_epoch=False, begin=0, end=3)]

test_dataloader = dict(
    batch_size=4,
    num_workers=0,
    dataset=dict(type='ToyRegressionDataset', size=8, seed=1),
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'))
test_evaluator = dict(type='ToyMSEMetric')
test_cfg = dict(type='TestLoop')

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=1),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=2),
    sampler_seed=dict(type='DistSamplerSeedHook'))
custom_hooks = [
    dict(type='localmim.IterationSeedHook'),
    dict(type='ToyLossRecorderHook'),
    dict(type='ToyWeightDumpHook'),
]
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
