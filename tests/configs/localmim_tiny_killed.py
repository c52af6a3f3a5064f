# localmim_tiny_resume.py, SIGKILLed halfway through writing its iteration-6 checkpoint.
_base_ = './localmim_tiny_resume.py'
custom_imports = dict(imports=['engine_toys'], allow_failed_imports=False)
custom_hooks = [
    dict(type='localmim.IterationSeedHook'),
    dict(type='ToyKillDuringSaveHook', at_iter=6),
]
