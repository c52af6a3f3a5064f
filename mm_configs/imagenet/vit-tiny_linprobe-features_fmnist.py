# Frozen-feature linear probe of the tiny ViT of pretrain/localmim_vit-tiny_fmnist.py on Fashion-MNIST,
# run by tools/linear_probe.py (not tools/train.py): the encoder's features are extracted ONCE for the
# training and test images (no augmentation), then a softmax layer is fitted on them with full-batch
# L-BFGS (L2 weight 1e-3 on standardised features; give several in probe.l2_grid to pick one on a
# held-out 10% of the training features).
#   python tools/linear_probe.py mm_configs/imagenet/vit-tiny_linprobe-features_fmnist.py BACKBONE.pth
#   python tools/linear_probe.py mm_configs/imagenet/vit-tiny_linprobe-features_fmnist.py random
# Features: the patch tokens of blocks 1, 3, 5, 7 (the LocalMIM taps), LayerNorm-ed per token and
# averaged over the image, concatenated: 4 x 96 = 384 values, what ImageClassifier(features='taps')
# classifies; --save-classifier writes the probed backbone + fitted layer as such a classifier, the
# start of the LP-FT fine-tune mm_configs/imagenet/vit-tiny_ft-short_fmnist.py. (Adding the 2x2 quadrant averages,
# probe.grids=(1, 2), 1920 values, lifts a RANDOM encoder to 80% on 5000 training images: a probe
# that strong hides what pretraining adds.)
_base_ = ['_base_/fashion_mnist.py']
default_scope = 'localmim'
model = dict(
    type='localmim.ImageClassifier',
    backbone=dict(type='localmim.VisionTransformer', arch=None, img_size=64, patch_size=8, embed_dim=96,
                  depth=8, num_heads=3, pos_embed='learned', final_norm=False, out_indices=(1, 3, 5, 7)),
    num_classes=10, features='taps', fc_norm=False, linear_probe=True,
    data_preprocessor={{_base_.data_preprocessor}})
probe = dict(grids=(1,), token_norm=True, l2_grid=(1e-3,), max_iter=100, holdout=0.1)
# both splits through the test pipeline (resize only): features are computed once, so no augmentation
probe_train_dataloader = dict(
    batch_size=256, num_workers=2, persistent_workers=False, drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='localmim.FashionMNIST', data_root={{_base_.data_root}}, split='train',
                 num_samples=20000, pipeline={{_base_.test_pipeline}}, test_mode=True))
probe_test_dataloader = dict(
    batch_size=256, num_workers=2, persistent_workers=False, drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='localmim.FashionMNIST', data_root={{_base_.data_root}}, split='test',
                 num_samples=None, pipeline={{_base_.test_pipeline}}, test_mode=True))
