# The release's pretraining optimiser: AdamW (0.9, 0.95), wd 0.05 except 1-D params, tokens and
# position tables; lr = base_lr * total_batch / 256 (auto_scale_lr); fp16 AMP as the release.
# Leaf configs set base_lr, epochs, warm-up and min lr (see pretrain/*.py).
optim_wrapper = dict(
    type='AmpOptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, betas=(0.9, 0.95), weight_decay=0.05),
    paramwise_cfg=dict(
        flat_decay_mult=0.0,
        custom_keys={'pos_embed': dict(decay_mult=0.0), 'cls_token': dict(decay_mult=0.0),
                     'mask_token': dict(decay_mult=0.0), 'relative_position_bias_table': dict(decay_mult=0.0)}),
)
auto_scale_lr = dict(enable=True, base_batch_size=256)
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1600)
