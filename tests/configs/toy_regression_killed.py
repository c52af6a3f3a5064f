# toy_regression.py, SIGKILLed halfway through writing its iteration-4 checkpoint.
_base_ = './toy_regression.py'
custom_hooks = [
    dict(type='localmim.IterationSeedHook'),
    dict(type='ToyLossRecorderHook'),
    dict(type='ToyKillDuringSaveHook', at_iter=4),
]
