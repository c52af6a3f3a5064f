"""Import the LocalMIM release's pretraining checkpoints (ViT and Swin) into :class:`localmim.LocalMIM`,
so that pretraining continues from them (``load_from``).

ViT release keys ({'model': state_dict}): encoder params at the top level (``cls_token``,
``pos_embed``, ``patch_embed.*``, ``blocks.*``), ``norm.{i}`` (one LayerNorm per tap),
``decoder.{i}.*`` (same layout as our :class:`LocalDecoder`, 1x1 conv output ``pred.{k}``) and
``hog_enc.{i}.conv.{weight,bias}`` (fixed Sobel kernels, optional frozen bias, one HOG module per
scale). Ours: ``encoder.*``, ``tap_norms.{i}``, ``decoders.{i}``, ``target.bias`` ([1, 2] shared or
[num_scales, 2] per scale).

Swin release keys (the layout assumed here, from the release's model description):
- ``encoder.patch_embed.{proj,norm}.*``, ``encoder.layers.{i}.blocks.{j}.*`` (timm names, plus the
  buffers ``attn.relative_position_index``), ``encoder.layers.{i}.downsample.{norm,reduction}.*``
  for i = 0-2: the merge at the END of stage i, neighbours concatenated (0,0), (0,1), (1,0), (1,1);
- ``encoder.norm.{i}``: one LayerNorm per stage (the tap norms);
- ``decoder.{i}.{embed, mask_token, pos_embed, blocks.0.*, norm, pred}``: our decoder layout with a
  Linear ``pred`` (``pred_layer='linear'``) and sin-cos ``pos_embed`` [1, h*w, dim] without cls;
- ``hog_enc.{i}.conv.{weight,bias}`` for the four scales (absent for the pixel target).
Converted: merges moved to the start of the next stage with their 4C channels put in the standard
order (:func:`.swin.reorder_merge`), ``encoder.norm.{i}`` -> ``tap_norms.{i}``, ``decoder.{i}`` ->
``decoders.{i}`` as they are, the HOG biases -> ``target.bias``. Only the first scale's loss can equal
the release's on the same weights: from the second stage on the release puts tokens in the wrong
windows (its post-merge coordinates), which ours does not copy.
"""
import re

import torch

from ..models.targets import SOBEL
from .common import new_report, unwrap_state_dict
from .swin import _convert_layers, _require, swin_backbone_key


def _take_hog_entry(key, value, biases, report):
    """Handle one ``hog_enc.{i}.*`` key: check the Sobel kernel (dropped: HOGTarget rebuilds it),
    collect the bias in ``biases``, drop anything else."""
    index, name = key[len('hog_enc.'):].split('.', 1)
    if name == 'conv.weight':
        expected = torch.stack([SOBEL, SOBEL.t()])[:, None]
        if not torch.allclose(value.float(), expected):
            raise ValueError(f'{key} is not the fixed Sobel kernel pair; refusing to import')
    elif name == 'conv.bias':
        biases[int(index)] = value.float()
        report['converted'].append(f'{key} -> target.bias[{int(index)}]')
        return
    report['dropped'].append(key)


def _add_hog_bias(out, report, biases):
    """``target.bias`` from the per-scale biases: [1, 2] when all are equal, else [num_scales, 2];
    ``report['hog_bias']`` says which ``HOGTarget(bias=...)`` the pretraining config needs."""
    if not biases:
        return
    stacked = torch.stack([biases[i] for i in sorted(biases)])
    same = all(torch.equal(stacked[0], b) for b in stacked)
    out['target.bias'] = stacked[:1] if same else stacked
    report['hog_bias'] = 'shared' if same else 'per_scale'


def convert_release_vit_pretrain(checkpoint):
    """Release ViT pretraining checkpoint -> LocalMIM state dict (for ``load_from``)."""
    state = unwrap_state_dict(checkpoint)
    out, report, biases = {}, new_report(), {}
    for key, value in state.items():
        head, _, rest = key.partition('.')
        if head in ('cls_token', 'pos_embed', 'patch_embed', 'blocks'):
            out[f'encoder.{key}'] = value
        elif head == 'norm':
            out[f'tap_norms.{rest}'] = value
        elif head == 'decoder':
            out[f'decoders.{rest}'] = value
        elif head == 'hog_enc':
            _take_hog_entry(key, value, biases, report)
            continue
        else:
            report['dropped'].append(key)
            continue
        report['loaded'].append(key)
    _add_hog_bias(out, report, biases)
    return out, report


def convert_release_swin_pretrain(checkpoint):
    """Release Swin pretraining checkpoint -> LocalMIM state dict (for ``load_from``); see the
    module doc for the layout and what is converted. The pretraining config needs the Swin
    decoders with ``pred_layer='linear'`` (as ``mm_configs/_base_/models/swin_localmim-b.py``)."""
    state = unwrap_state_dict(checkpoint)
    _require(state, 'encoder.patch_embed.proj.weight', 'not a LocalMIM release Swin checkpoint')
    out, report, biases = {}, new_report(), {}
    for key, value in state.items():
        name = key[len('encoder.'):] if key.startswith('encoder.') else None
        tap_norm = re.fullmatch(r'norm\.(\d+)\.(weight|bias)', name or '')
        if name is not None and name.startswith(('patch_embed.', 'layers.')):
            new, new_value = _convert_layers(name, value, merge_at_end=True, reorder=True)
            if not swin_backbone_key(new):  # buffers (relative position index, attention masks)
                report['dropped'].append(key)
                continue
            out[f'encoder.{new}'] = new_value
            if new == name:
                report['loaded'].append(key)
            else:
                report['converted'].append(f'{key} -> encoder.{new} (moved to the next stage, neighbours reordered)')
        elif tap_norm:
            out[f'tap_norms.{tap_norm.group(1)}.{tap_norm.group(2)}'] = value
            report['converted'].append(f'{key} -> tap_norms.{tap_norm.group(1)}.{tap_norm.group(2)}')
        elif key.startswith('decoder.'):  # our decoder layout, re-prefixed
            out['decoders.' + key[len('decoder.'):]] = value
            report['loaded'].append(key)
        elif key.startswith('hog_enc.'):
            _take_hog_entry(key, value, biases, report)
        else:
            report['dropped'].append(key)
    _add_hog_bias(out, report, biases)
    return out, report
