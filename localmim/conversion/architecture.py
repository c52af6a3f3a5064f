"""A ViT or Swin backbone's architecture, read from its weights, and the timm call that builds it.

Everything but a ViT's number of heads follows from the tensor shapes (Swin's heads and window
from its relative position tables). ``known`` fills what the weights cannot tell: the
``architecture`` a converted checkpoint stores in its ``meta``, or the encoder of the config that
a pretraining checkpoint stores (``meta['cfg']``); for ViT the standard sizes are recognised.
"""
import ast
import math
import re

from ..models.swin import SWIN_ARCHS
from ..models.vit import VIT_ARCHS

__all__ = ['backbone_architecture', 'timm_create_model_call', 'architecture_from_config_text']

_TIMM_BASE_MODEL = {'vit': 'vit_base_patch16_224', 'swin': 'swin_base_patch4_window7_224'}


def _strip(state):
    prefixed = any(key.startswith('backbone.') for key in state)
    return {key[len('backbone.'):] if key.startswith('backbone.') else key: value
            for key, value in state.items() if not prefixed or key.startswith('backbone.')
            or key.startswith(('head.', 'fc_norm.'))}


def backbone_architecture(state, known=None):
    """The timm keyword arguments of a backbone state dict (ours, with or without ``backbone.``,
    or timm's), plus ``family`` ('vit' or 'swin').

    Args:
        state (dict): the weights.
        known (dict): values to take instead of guessing (e.g. ``num_heads``, ``img_size``).

    Returns:
        dict: ViT: img_size, patch_size, embed_dim, depth, num_heads (None if unknown),
        mlp_ratio, qkv_bias, init_values, num_classes, global_pool, fc_norm. Swin: img_size
        (224 unless known), patch_size, window_size, embed_dim, depths, num_heads, mlp_ratio,
        num_classes.
    """
    sd, known = _strip(state), dict(known or {})
    head = sd.get('head.weight', sd.get('head.fc.weight'))
    num_classes = int(head.shape[0]) if head is not None else 0
    if 'patch_embed.proj.weight' not in sd:
        raise ValueError(f'not a ViT or Swin backbone: no patch_embed.proj.weight among '
                         f'{list(state)[:4]}...')
    embed_dim, _, patch, _ = sd['patch_embed.proj.weight'].shape
    if any(key.startswith('blocks.') for key in sd):
        depth = 1 + max(int(key.split('.')[1]) for key in sd if key.startswith('blocks.'))
        tokens = sd['pos_embed'].shape[1] - 1 if 'pos_embed' in sd else None
        side = math.isqrt(tokens) if tokens else None
        arch = dict(family='vit', img_size=side * patch if side else 224, patch_size=patch,
                    embed_dim=embed_dim, depth=depth, num_heads=_standard_vit_heads(embed_dim, depth),
                    mlp_ratio=sd['blocks.0.mlp.fc1.weight'].shape[0] / embed_dim,
                    qkv_bias='blocks.0.attn.qkv.bias' in sd,
                    init_values=1e-5 if 'blocks.0.ls1.gamma' in sd else None,
                    num_classes=num_classes)
        if 'fc_norm.weight' in sd:
            arch.update(global_pool='avg', fc_norm=True)
    elif any(key.startswith('layers.') for key in sd):
        stages = sorted({int(m.group(1)) for key in sd if (m := re.match(r'layers\.(\d+)\.blocks', key))})
        depths, heads = [], []
        for stage in stages:
            blocks = {int(m.group(1)) for key in sd
                      if (m := re.match(rf'layers\.{stage}\.blocks\.(\d+)\.', key))}
            depths.append(max(blocks) + 1)
            heads.append(int(sd[f'layers.{stage}.blocks.0.attn.relative_position_bias_table'].shape[1]))
        table = sd['layers.0.blocks.0.attn.relative_position_bias_table'].shape[0]
        arch = dict(family='swin', img_size=224, patch_size=patch,
                    window_size=(math.isqrt(table) + 1) // 2, embed_dim=embed_dim,
                    depths=tuple(depths), num_heads=tuple(heads),
                    mlp_ratio=sd['layers.0.blocks.0.mlp.fc1.weight'].shape[0] / embed_dim,
                    num_classes=num_classes)
    else:
        raise ValueError('not a ViT or Swin backbone: neither blocks.* nor layers.* keys')
    arch.update({key: value for key, value in known.items() if key in arch and value is not None})
    return arch


def _standard_vit_heads(embed_dim, depth):
    for dim, blocks, heads, _ in VIT_ARCHS.values():
        if (dim, blocks) == (embed_dim, depth):
            return heads
    return None


def architecture_from_config_text(text):
    """``num_heads``/``img_size``/``window_size`` of the encoder (pretraining) or backbone of the
    config that mmengine stores as text in a checkpoint's ``meta['cfg']``; {} if none.

    The text comes from the checkpoint file, so it is parsed, never executed: only literal values
    of ``model = dict(encoder=dict(...))`` (or ``backbone``) are read.
    """
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return {}
    model = next((_dict_items(node.value) for node in tree.body if isinstance(node, ast.Assign)
                  and [getattr(t, 'id', None) for t in node.targets] == ['model']), {})
    net = _dict_items(model.get('encoder') or model.get('backbone'))
    found = {}
    for key in ('type', 'arch', 'num_heads', 'img_size', 'window_size'):
        if key in net:
            try:
                found[key] = ast.literal_eval(net[key])
            except ValueError:  # not a literal
                pass
    archs = SWIN_ARCHS if 'Swin' in str(found.pop('type', '')) else VIT_ARCHS
    arch = found.pop('arch', None)
    if arch in archs:  # the arch's sizes win over the explicit ones, as in the model
        found['num_heads'] = archs[arch][2]
    if isinstance(found.get('num_heads'), list):
        found['num_heads'] = tuple(found['num_heads'])
    return found


def _dict_items(node):
    """{key: value node} of a ``dict(k=v, ...)`` call or ``{'k': v}`` literal node; {} otherwise."""
    if isinstance(node, ast.Call) and getattr(node.func, 'id', None) == 'dict':
        return {keyword.arg: keyword.value for keyword in node.keywords if keyword.arg}
    if isinstance(node, ast.Dict):
        return {key.value: value for key, value in zip(node.keys, node.values)
                if isinstance(key, ast.Constant) and isinstance(key.value, str)}
    return {}


def timm_create_model_call(arch, file):
    """The ``timm.create_model(...)`` call that builds ``arch`` and loads ``file`` strictly.

    ``checkpoint_path`` loads the file as it is (``pretrained_cfg_overlay=dict(file=...)`` would
    pass it through timm's filter for the original Swin release, which renames the merges of a
    file without a classifier head).
    """
    args = {key: value for key, value in arch.items() if key != 'family' and value is not None}
    if args.get('mlp_ratio') == 4.0:
        del args['mlp_ratio']
    if args.get('qkv_bias') is True:
        del args['qkv_bias']
    shown = ', '.join(f'{key}={value!r}' for key, value in args.items())
    return (f"timm.create_model('{_TIMM_BASE_MODEL[arch['family']]}', checkpoint_path='{file}', "
            f'{shown})')
