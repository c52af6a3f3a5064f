# localmim_tiny_epochs.py SIGKILLed after iteration 7, in the middle of epoch 2 (4 iterations per
# epoch, checkpoints at the end of each epoch).
_base_ = './localmim_tiny_epochs.py'
custom_imports = dict(imports=['engine_toys'], allow_failed_imports=False)
custom_hooks = [
    dict(type='localmim.IterationSeedHook'),
    dict(type='ToyKillAtIterHook', at_iter=7),
]
