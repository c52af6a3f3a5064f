# localmim_tiny_resume.py with a NaN pixel in the batch of iteration 3.
_base_ = './localmim_tiny_resume.py'
custom_imports = dict(imports=['engine_toys'], allow_failed_imports=False)
custom_hooks = [
    dict(type='localmim.IterationSeedHook'),
    dict(type='NaNImageHook', at_iter=3),
]
