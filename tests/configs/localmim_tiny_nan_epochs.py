# localmim_tiny_epochs.py for 2 epochs with a NaN pixel in rank 0's batch of iteration 3.
_base_ = './localmim_tiny_epochs.py'
custom_imports = dict(imports=['engine_toys'], allow_failed_imports=False)
custom_hooks = [
    dict(type='localmim.IterationSeedHook'),
    dict(type='NaNImageHook', at_iter=3, ranks=[0]),
]
train_cfg = dict(max_epochs=2)
