# Fine-tuning schedule: AdamW, layer-wise lr decay, per-iteration linear warmup then cosine to
# min_lr (per parameter group: eta_min_ratio keeps each group's layer-decay scale, as MAE does).
# lr is for the total batch `auto_scale_lr.base_batch_size`; --auto-scale-lr rescales it.
lr, min_lr, warmup_epochs, max_epochs = 2e-3, 1e-5, 20, 100
optim_wrapper = dict(
    type='AmpOptimWrapper', loss_scale='dynamic',
    constructor='localmim.LayerDecayOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=lr, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(layer_decay_rate=0.65))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min_ratio=min_lr / lr, by_epoch=True, begin=warmup_epochs,
         end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
auto_scale_lr = dict(enable=False, base_batch_size=1024)
