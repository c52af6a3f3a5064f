# The release's pretraining optimiser: AdamW (0.9, 0.95), wd 0.05 except 1-D params and position
# tables (cls and mask tokens ARE decayed, as the release); lr = base_lr * total_batch / 256
# (auto_scale_lr). AMP: bf16 autocast where the device has it (CPU too), else fp16 with loss
# scaling (the release: fp16).
# Leaf configs set base_lr, epochs, warm-up and min lr (see pretrain/*.py).
# The layer-decay constructor at its default rate 1.0 only drops weight decay, on every param
# with ndim <= 1 and every name in the model's no_weight_decay() (position and relative position
# tables; tokens too unless decay_tokens=True: set decay_tokens=False to exempt them).
optim_wrapper = dict(
    type='AmpOptimWrapper',
    constructor='LayerDecayOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=2e-4, betas=(0.9, 0.95), weight_decay=0.05),
    paramwise_cfg=dict(decay_tokens=True),
)
auto_scale_lr = dict(enable=True, base_batch_size=256)
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1600)
# Reseed every iteration from (seed, rank, iteration) so that a resumed run draws the same masks
# as an uninterrupted one (mmengine checkpoints keep no random generator states).
custom_hooks = [dict(type='localmim.IterationSeedHook')]
