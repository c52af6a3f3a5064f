"""Layer-wise lr decay constructor: groups checked against a hand-written table."""
import os.path as osp

import pytest
import torch.nn as nn
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope

from localmim.models import ImageClassifier, LocalMIM, SimpleFeaturePyramid, VisionTransformer

WD = 0.05
TINY = dict(arch=None, img_size=16, patch_size=4, embed_dim=8, depth=2, num_heads=2)


def settings(optim_wrapper):
    """{param id: (lr, weight_decay)} from the built optimizer."""
    return {id(p): (g['lr'], g['weight_decay']) for g in optim_wrapper.optimizer.param_groups for p in g['params']}


def by_name(model, optim_wrapper):
    table = settings(optim_wrapper)
    return {n: table[id(p)] for n, p in model.named_parameters() if id(p) in table}


def build(model, rate, optimizer=None, scope='localmim', **paramwise):
    cfg = dict(constructor='localmim.LayerDecayOptimWrapperConstructor',
               optimizer=optimizer or dict(type='AdamW', lr=1.0, weight_decay=WD),
               paramwise_cfg=dict(layer_decay_rate=rate, **paramwise))
    with DefaultScope.overwrite_default_scope(scope):
        return build_optim_wrapper(model, cfg)


def test_groups_of_a_depth_2_vit_classifier():
    # rate 0.5, 4 layer ids (embeddings, block 0, block 1, top): scales 1/8, 1/4, 1/2, 1
    model = ImageClassifier(dict(type='VisionTransformer', **TINY, pos_embed='learned', final_norm=True,
                                 rel_pos_bias=True, init_values=0.1), num_classes=3)
    e, b0, b1, top = 0.125, 0.25, 0.5, 1.0
    expected = {
        'backbone.cls_token': (e, 0), 'backbone.pos_embed': (e, 0),
        'backbone.patch_embed.proj.weight': (e, WD), 'backbone.patch_embed.proj.bias': (e, 0),
        'backbone.norm.weight': (top, 0), 'backbone.norm.bias': (top, 0),
        'fc_norm.weight': (top, 0), 'fc_norm.bias': (top, 0), 'head.weight': (top, WD), 'head.bias': (top, 0),
    }
    for i, s in ((0, b0), (1, b1)):
        expected.update({
            f'backbone.blocks.{i}.norm1.weight': (s, 0), f'backbone.blocks.{i}.norm1.bias': (s, 0),
            f'backbone.blocks.{i}.attn.qkv.weight': (s, WD), f'backbone.blocks.{i}.attn.qkv.bias': (s, 0),
            f'backbone.blocks.{i}.attn.relative_position_bias_table': (s, 0),
            f'backbone.blocks.{i}.attn.proj.weight': (s, WD), f'backbone.blocks.{i}.attn.proj.bias': (s, 0),
            f'backbone.blocks.{i}.ls1.gamma': (s, 0), f'backbone.blocks.{i}.ls2.gamma': (s, 0),
            f'backbone.blocks.{i}.norm2.weight': (s, 0), f'backbone.blocks.{i}.norm2.bias': (s, 0),
            f'backbone.blocks.{i}.mlp.fc1.weight': (s, WD), f'backbone.blocks.{i}.mlp.fc1.bias': (s, 0),
            f'backbone.blocks.{i}.mlp.fc2.weight': (s, WD), f'backbone.blocks.{i}.mlp.fc2.bias': (s, 0),
        })
    got = by_name(model, build(model, 0.5))
    assert got == expected  # powers of 1/2: exact
    groups = build(model, 0.5).optimizer.param_groups
    assert groups[0]['lr'] == 1.0 and groups[0]['weight_decay'] == WD  # logged lr = base lr


class Detector(nn.Module):
    """backbone + neck + head, as mmdet/mmseg models are laid out."""

    def __init__(self):
        super().__init__()
        self.backbone = VisionTransformer(**TINY, window_size=2, global_blocks=[1], rel_pos_bias=True)
        self.neck = SimpleFeaturePyramid(8, out_channels=4)
        self.head = nn.Linear(4, 2)


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_dense_model_in_other_scopes(scope):
    import mmdet.registry  # noqa: F401  (register the scopes)
    import mmseg.registry  # noqa: F401
    model = Detector()
    got = by_name(model, build(model, 0.7, optimizer=dict(type='AdamW', lr=2.0, weight_decay=WD), scope=scope))
    assert 'backbone.cls_token' not in got  # windowed backbones have none
    assert got['backbone.patch_embed.proj.weight'] == pytest.approx((2.0 * 0.7 ** 3, WD))
    assert got['backbone.blocks.1.attn.relative_position_bias_table'] == pytest.approx((2.0 * 0.7 ** 1, 0))
    assert got['neck.levels.0.0.weight'] == pytest.approx((2.0, WD))  # outside the backbone: no decay
    assert got['neck.levels.0.1.bias'] == pytest.approx((2.0, 0))
    assert got['head.weight'] == pytest.approx((2.0, WD))


def test_pretraining_rate_1_drops_decay_on_1d_tokens_and_tables():
    model = LocalMIM(encoder=dict(type='VisionTransformer', **TINY, final_norm=False), taps=[0, 1],
                     target=dict(type='HOGTarget', nbins=4, cell_sizes=(4, 8)), decoder=dict(dims=8, num_heads=2))
    got = by_name(model, build(model, 1.0))
    assert 'encoder.pos_embed' not in got and 'decoders.0.pos_embed' not in got  # fixed sin-cos: frozen
    assert got['encoder.cls_token'] == (1.0, 0) and got['decoders.1.mask_token'] == (1.0, 0)
    assert got['encoder.blocks.0.attn.qkv.weight'] == (1.0, WD)
    assert got['decoders.0.blocks.0.mlp.fc1.weight'] == (1.0, WD)
    assert got['tap_norms.1.weight'] == (1.0, 0) and got['decoders.0.pred.0.bias'] == (1.0, 0)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert sorted(got) == sorted(trainable)
    with DefaultScope.overwrite_default_scope('localmim'):  # no paramwise_cfg at all: the same rules
        plain = build_optim_wrapper(model, dict(constructor='localmim.LayerDecayOptimWrapperConstructor',
                                                optimizer=dict(type='AdamW', lr=1.0, weight_decay=WD)))
    assert by_name(model, plain) == got


def test_release_recipe_decays_cls_and_mask_tokens():
    """The pretraining configs follow the release: 3-D cls/mask tokens decayed, tables and 1-D
    parameters not; decay_tokens=False keeps the exemption."""
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'mm_configs', 'pretrain',
                                   'localmim_vit-b_1600e_in1k.py'))
    assert cfg.optim_wrapper.paramwise_cfg == dict(decay_tokens=True)
    model = LocalMIM(encoder=dict(type='VisionTransformer', **TINY, final_norm=False, rel_pos_bias=True,
                                  pos_embed='learned'), taps=[0, 1],
                     target=dict(type='HOGTarget', nbins=4, cell_sizes=(4, 8)), decoder=dict(dims=8, num_heads=2))
    got = by_name(model, build(model, 1.0, **cfg.optim_wrapper.paramwise_cfg))
    assert got['encoder.cls_token'] == (1.0, WD) and got['decoders.1.mask_token'] == (1.0, WD)
    assert got['encoder.pos_embed'] == (1.0, 0)
    assert got['encoder.blocks.0.attn.relative_position_bias_table'] == (1.0, 0)
    assert got['encoder.blocks.0.attn.qkv.bias'] == (1.0, 0) and got['encoder.blocks.0.attn.qkv.weight'] == (1.0, WD)
    exempt = by_name(model, build(model, 1.0, decay_tokens=False))
    assert exempt['encoder.cls_token'] == (1.0, 0) and exempt['decoders.1.mask_token'] == (1.0, 0)
    assert {k: v for k, v in exempt.items() if not k.endswith('_token')} == \
        {k: v for k, v in got.items() if not k.endswith('_token')}


def test_lars_no_decay_options_and_errors():
    model = ImageClassifier(dict(type='VisionTransformer', **TINY), num_classes=3, linear_probe=True, fc_norm=False)
    wrapper = build(model, 1.0, optimizer=dict(type='localmim.Lars', lr=0.1, momentum=0.9, weight_decay=0.,
                                               always_adapt=True),
                    no_decay_options=dict(always_adapt=False))
    groups = {tuple(id(p) for p in g['params']): g for g in wrapper.optimizer.param_groups}
    assert type(wrapper.optimizer).__name__ == 'Lars' and len(groups) == 2  # frozen backbone left out
    assert groups[(id(model.head.weight),)]['always_adapt'] is True
    assert groups[(id(model.head.bias),)]['always_adapt'] is False
    with pytest.raises(KeyError, match='norm_decay_mult'):
        build(model, 0.5, norm_decay_mult=0.)
    with pytest.raises(TypeError, match='get_layer_depth'):
        build(nn.Sequential(nn.Linear(2, 2)), 0.5)
