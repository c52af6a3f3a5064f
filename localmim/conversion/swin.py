"""Conversion of Swin weights to ``localmim.SwinTransformer`` backbones.

Every function is pure and returns ``(new_state_dict, report)`` (see :mod:`.common`). Backbone
keys carry the ``backbone.`` prefix, as for ViT. Our names are timm's: patch merging sits at the
START of stages 1-3 (``layers.{i}.downsample``) and concatenates the 2x2 neighbours in the
standard order (row, col) = (0,0), (1,0), (0,1), (1,1).

The LocalMIM release's Swin pretraining checkpoint differs in three ways, all corrected here:
1. keys live under ``encoder.``, patch merging at the END of stage i (``layers.{i}.downsample``);
2. its pretraining merge concatenates (0,0), (0,1), (1,0), (1,1): the 4C input columns of
   ``reduction.weight`` and the 4C ``norm`` parameters are permuted to the standard order
   (LayerNorm over the whole 4C vector is unchanged by a permutation of its channels);
3. the per-stage pretraining norms ``encoder.norm.{0..3}`` normalise the taps; the last one
   (the last stage's output) becomes the backbone's final ``norm`` (the release left it out).
"""
import re

import torch

from .common import new_report, unwrap_state_dict

BACKBONE = 'backbone.'
BLOCK_KEYS = tuple(f'{m}.{p}' for m in ('norm1', 'attn.qkv', 'attn.proj', 'norm2', 'mlp.fc1', 'mlp.fc2')
                   for p in ('weight', 'bias')) + ('attn.relative_position_bias_table',)
MERGE_KEYS = ('norm.weight', 'norm.bias', 'reduction.weight')
EMBED_KEYS = ('patch_embed.proj.weight', 'patch_embed.proj.bias', 'patch_embed.norm.weight', 'patch_embed.norm.bias')
BUFFERS = ('relative_position_index', 'attn_mask', 'relative_coords_table')
RELEASE_MERGE_ORDER = ((0, 0), (0, 1), (1, 0), (1, 1))  # (row, col) offsets, release pretraining
STANDARD_MERGE_ORDER = ((0, 0), (1, 0), (0, 1), (1, 1))  # Swin / timm / ours


def merge_channel_order(channels, source=RELEASE_MERGE_ORDER, target=STANDARD_MERGE_ORDER):
    """Index [4C] such that ``x_source[index]`` is the 4C merge vector in the ``target`` order."""
    return torch.cat([torch.arange(channels) + source.index(offset) * channels for offset in target])


def reorder_merge(value, source=RELEASE_MERGE_ORDER, target=STANDARD_MERGE_ORDER):
    """A patch-merging parameter (``norm.weight``/``norm.bias`` [4C], ``reduction.weight``
    [out, 4C]) with its 4C channels moved from the ``source`` to the ``target`` neighbour order."""
    index = merge_channel_order(value.shape[-1] // 4, source, target)
    return value.index_select(-1, index)


def swin_backbone_key(name):
    """True for the parameters of a Swin backbone in our (timm's) names, final norm excluded."""
    if name in EMBED_KEYS:
        return True
    match = re.fullmatch(r'layers\.\d+\.(blocks\.\d+\.(.+)|downsample\.(.+))', name)
    return bool(match) and (match.group(2) in BLOCK_KEYS or match.group(3) in MERGE_KEYS)


def missing_swin_keys(names):
    """Backbone keys (no prefix) absent from ``names``, for the stages and blocks ``names`` shows."""
    blocks = {}
    for name in names:
        if m := re.match(r'layers\.(\d+)\.blocks\.(\d+)\.', name):
            blocks[int(m.group(1))] = max(blocks.get(int(m.group(1)), -1), int(m.group(2)))
    expected = list(EMBED_KEYS)
    for stage, last in sorted(blocks.items()):
        if stage > 0:
            expected += [f'layers.{stage}.downsample.{k}' for k in MERGE_KEYS]
        expected += [f'layers.{stage}.blocks.{j}.{k}' for j in range(last + 1) for k in BLOCK_KEYS]
    return [k for k in expected if k not in names]


def _finish(out, report):
    report['missing'] = missing_swin_keys({k[len(BACKBONE):] for k in out if k.startswith(BACKBONE)})
    return out, report


def _require(state, key, hint):
    if key not in state:
        raise ValueError(f'{key!r} not found in the checkpoint ({len(state)} keys, e.g. {list(state)[:4]}): {hint}')


def _convert_layers(name, value, merge_at_end, reorder):
    """Our key and value for a ``layers.*`` key; merge_at_end: ``layers.i.downsample`` merges
    stage i's output (original Swin / release) instead of stage i's input (timm / ours)."""
    m = re.fullmatch(r'layers\.(\d+)\.downsample\.(.+)', name)
    if m is None:
        return name, value
    stage = int(m.group(1)) + (1 if merge_at_end else 0)
    if reorder:
        value = reorder_merge(value)
    return f'layers.{stage}.downsample.{m.group(2)}', value


def convert_release_swin(checkpoint):
    """LocalMIM release Swin pretraining checkpoint (``{'model': sd}``) -> backbone keys.

    ``encoder.patch_embed.*`` and ``encoder.layers.*`` become ``backbone.*`` (merges moved to the
    next stage and reordered, see the module doc); ``encoder.norm.{last}`` becomes
    ``backbone.norm``; the other tap norms, ``decoder.*``, ``hog_enc.*`` and buffers are dropped.
    """
    sd = unwrap_state_dict(checkpoint)
    _require(sd, 'encoder.patch_embed.proj.weight', 'not a LocalMIM release Swin checkpoint')
    taps = sorted({int(m.group(1)) for k in sd if (m := re.fullmatch(r'encoder\.norm\.(\d+)\.weight', k))})
    if not taps:
        raise ValueError("no per-stage 'encoder.norm.{i}.weight' keys: not a LocalMIM release Swin checkpoint")
    out, report = {}, new_report()
    for key, value in sd.items():
        name = key[len('encoder.'):] if key.startswith('encoder.') else ''
        tap_norm = re.fullmatch(r'norm\.(\d+)\.(weight|bias)', name)
        new, new_value = _convert_layers(name, value, merge_at_end=True, reorder=True)
        if name.startswith('layers.') and swin_backbone_key(new):
            out[BACKBONE + new] = new_value
            if new == name:
                report['loaded'].append(key)
            else:
                report['converted'].append(f'{key} -> {BACKBONE}{new} (moved to the next stage, neighbours reordered)')
        elif name in EMBED_KEYS:
            out[BACKBONE + name] = value
            report['loaded'].append(key)
        elif tap_norm and int(tap_norm.group(1)) == taps[-1]:
            out[f'{BACKBONE}norm.{tap_norm.group(2)}'] = value
            report['converted'].append(f'{key} -> {BACKBONE}norm.{tap_norm.group(2)}')
        else:
            report['dropped'].append(key)
    return _finish(out, report)


def convert_timm_swin(checkpoint):
    """timm Swin weights, or the original Swin release format (merges at the end of stages,
    ``layers.0.downsample`` present) -> backbone keys; the classifier ``head.fc``/``head`` becomes
    ``head.*`` (``localmim.ImageClassifier``). The neighbour order of both is already standard."""
    sd = unwrap_state_dict(checkpoint)
    _require(sd, 'patch_embed.proj.weight', 'not a timm/original Swin checkpoint (LocalMIM release: '
             'convert_release_swin; ours: convert_localmim_swin_pretrain)')
    merge_at_end = 'layers.0.downsample.reduction.weight' in sd
    out, report = {}, new_report()
    for key, value in sd.items():
        new, value = _convert_layers(key, value, merge_at_end, reorder=False)
        head = re.fullmatch(r'head(?:\.fc)?\.(weight|bias)', key)
        if swin_backbone_key(new) or key in ('norm.weight', 'norm.bias'):
            out[BACKBONE + new] = value
            report['loaded' if new == key else 'converted'].append(key if new == key else f'{key} -> {BACKBONE}{new}')
        elif head:
            out[f'head.{head.group(1)}'] = value
            report['converted' if key.startswith('head.fc') else 'loaded'].append(
                f'{key} -> head.{head.group(1)}' if key.startswith('head.fc') else key)
        else:
            report['dropped'].append(key)
    return _finish(out, report)


def convert_localmim_swin_pretrain(checkpoint, final_norm_tap=-1):
    """Our LocalMIM Swin pretraining checkpoint -> backbone keys.

    ``encoder.*`` -> ``backbone.*``; the LayerNorm of tap ``final_norm_tap`` (``tap_norms.{i}``,
    default the last tap = the last stage's output) becomes ``backbone.norm`` (None: keep the
    encoder's own ``norm``). Decoders, the other tap norms and the target are dropped.
    """
    sd = unwrap_state_dict(checkpoint)
    _require(sd, 'encoder.patch_embed.proj.weight', 'not a LocalMIM Swin pretraining checkpoint')
    taps = sorted({int(m.group(1)) for k in sd if (m := re.fullmatch(r'tap_norms\.(\d+)\.weight', k))})
    if final_norm_tap is not None:
        if not taps:
            raise ValueError('checkpoint has no tap_norms.* to take the final norm from (final_norm_tap=None keeps '
                             'encoder.norm)')
        final_norm_tap = taps[final_norm_tap] if final_norm_tap < 0 else final_norm_tap
    out, report = {}, new_report()
    for key, value in sd.items():
        name = key[len('encoder.'):] if key.startswith('encoder.') else None
        tap_norm = re.fullmatch(r'tap_norms\.(\d+)\.(weight|bias)', key)
        if name is not None and (swin_backbone_key(name) or (final_norm_tap is None and name.startswith('norm.'))):
            out[BACKBONE + name] = value
            report['loaded'].append(key)
        elif tap_norm and int(tap_norm.group(1)) == final_norm_tap:
            out[f'{BACKBONE}norm.{tap_norm.group(2)}'] = value
            report['converted'].append(f'{key} -> {BACKBONE}norm.{tap_norm.group(2)}')
        else:
            report['dropped'].append(key)
    return _finish(out, report)


def export_timm_swin(checkpoint):
    """Swin backbone (``backbone.*`` or bare) or classifier weights -> a timm ``SwinTransformer``
    state dict (contiguous CPU tensors, ready for ``safetensors.torch.save_file``).

    Our names are timm's, so the backbone keys are kept (prefix removed); a classifier's
    ``head.weight``/``head.bias`` become timm's ``head.fc.*``. The per-output norms of a
    detection backbone (``norm0``-``norm2``), buffers and other keys are dropped.
    """
    sd = unwrap_state_dict(checkpoint)
    prefixed = any(k.startswith(BACKBONE) for k in sd)
    out, report = {}, new_report()
    for key, value in sd.items():
        in_backbone = not prefixed or key.startswith(BACKBONE)
        inner = key[len(BACKBONE):] if prefixed and in_backbone else key
        head = re.fullmatch(r'head(?:\.fc)?\.(weight|bias)', key)
        if in_backbone and (swin_backbone_key(inner) or inner in ('norm.weight', 'norm.bias')):
            new = inner
        elif head:
            new = f'head.fc.{head.group(1)}'
        else:
            report['dropped'].append(key)
            continue
        out[new] = value.detach().cpu().clone().contiguous()
        report['loaded' if new == key else 'converted'].append(key if new == key else f'{key} -> {new}')
    if 'patch_embed.proj.weight' not in out:
        raise ValueError('export_timm_swin: no patch_embed.proj.weight; not a Swin backbone '
                         f'(keys look like {list(sd)[:4]})')
    report['missing'] = missing_swin_keys(set(out))
    return out, report
