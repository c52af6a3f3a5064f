"""Conversion of ViT weights to and from ``localmim.VisionTransformer`` backbones.

Every function is pure (dict in, dict out) and returns ``(new_state_dict, report)``; ``report``
lists ``loaded`` (kept, only re-prefixed), ``converted`` (``'source -> target'``), ``dropped``
(source keys left out) and ``missing`` (backbone keys the source lacks). Backbone keys carry the
``backbone.`` prefix: save ``{'state_dict': new_state_dict}`` and load it with
``init_cfg=dict(type='Pretrained', checkpoint=..., prefix='backbone.')`` (mmengine strips the
prefix) or ``load_from``. A position table of another grid is resampled when it is loaded.
"""
import re

from .common import new_report, unwrap_state_dict

BACKBONE = 'backbone.'
EMBED_KEYS = ('cls_token', 'pos_embed', 'patch_embed.proj.weight', 'patch_embed.proj.bias')
BLOCK_KEYS = tuple(f'{m}.{p}' for m in ('norm1', 'attn.qkv', 'attn.proj', 'norm2', 'mlp.fc1', 'mlp.fc2')
                   for p in ('weight', 'bias'))
OPTIONAL_BLOCK_KEYS = ('ls1.gamma', 'ls2.gamma', 'attn.relative_position_bias_table')
CLASSIFIER_KEYS = ('fc_norm.weight', 'fc_norm.bias', 'head.weight', 'head.bias')


def vit_backbone_key(name):
    """True for the keys of a plain ViT (embeddings and blocks; not the final norm). A block key
    outside ``BLOCK_KEYS``/``OPTIONAL_BLOCK_KEYS`` (qk-norm, register tokens, ...) raises."""
    if name in EMBED_KEYS:
        return True
    match = re.fullmatch(r'blocks\.\d+\.(.+)', name)
    if match is None:
        if name in ('reg_token', 'norm_pre.weight', 'norm_pre.bias'):
            raise ValueError(f'unsupported ViT variant: key {name!r} has no counterpart in localmim.VisionTransformer')
        return False
    if match.group(1) not in BLOCK_KEYS + OPTIONAL_BLOCK_KEYS:
        raise ValueError(f'unsupported ViT block parameter {name!r} (supported: {BLOCK_KEYS + OPTIONAL_BLOCK_KEYS})')
    return True


def missing_vit_keys(backbone_keys):
    """Embedding and block keys absent from ``backbone_keys`` (names without prefix)."""
    blocks = {int(k.split('.')[1]) for k in backbone_keys if k.startswith('blocks.')}
    expected = list(EMBED_KEYS) + [f'blocks.{i}.{k}' for i in range(max(blocks, default=-1) + 1) for k in BLOCK_KEYS]
    return [k for k in expected if k not in backbone_keys]


def _require(state_dict, key, hint):
    if key not in state_dict:
        raise ValueError(f'{key!r} not found in the checkpoint ({len(state_dict)} keys, e.g. '
                         f'{list(state_dict)[:4]}): {hint}')


def _finish(out, report):
    names = {k[len(BACKBONE):] for k in out if k.startswith(BACKBONE)}
    report['missing'] = missing_vit_keys(names)
    return out, report


def convert_timm_vit(checkpoint):
    """MAE (``{'model': sd}``, pretrained or fine-tuned) or timm ViT weights -> backbone keys.

    Embeddings, blocks and the final ``norm`` become ``backbone.*``; ``fc_norm``/``head`` stay
    top-level (``localmim.ImageClassifier``'s names); MAE's ``mask_token``/``decoder_*`` are dropped.
    """
    sd = unwrap_state_dict(checkpoint)
    _require(sd, 'patch_embed.proj.weight', 'not a timm/MAE ViT (LocalMIM pretraining checkpoints: '
             'convert_localmim_pretrain; LocalMIM release: convert_release_vit)')
    out, report = {}, new_report()
    for name, value in sd.items():
        if vit_backbone_key(name) or name in ('norm.weight', 'norm.bias'):
            out[BACKBONE + name] = value
            report['loaded'].append(name)
        elif name in CLASSIFIER_KEYS:
            out[name] = value
            report['loaded'].append(name)
        else:
            report['dropped'].append(name)
    return _finish(out, report)


def convert_localmim_pretrain(checkpoint, final_norm_tap=-1):
    """Our LocalMIM ViT pretraining checkpoint -> backbone keys.

    ``encoder.*`` -> ``backbone.*``; the LayerNorm of tap ``final_norm_tap`` (``tap_norms.{i}``,
    default the last tap, which is the last block in LocalMIM's ViT configs) becomes the final
    ``backbone.norm`` and the encoder's own, untrained ``encoder.norm`` is dropped (None: keep
    ``encoder.norm``, drop all tap norms). Decoders, other tap norms and targets are dropped.
    """
    sd = unwrap_state_dict(checkpoint)
    _require(sd, 'encoder.patch_embed.proj.weight', 'not a LocalMIM ViT pretraining checkpoint')
    taps = sorted({int(k.split('.')[1]) for k in sd if k.startswith('tap_norms.')})
    if final_norm_tap is not None:
        if not taps:
            raise ValueError('checkpoint has no tap_norms.* to take the final norm from (final_norm_tap=None keeps '
                             'encoder.norm)')
        final_norm_tap = taps[final_norm_tap] if final_norm_tap < 0 else final_norm_tap
        if final_norm_tap not in taps:
            raise ValueError(f'final_norm_tap {final_norm_tap} not among the checkpoint taps {taps}')
    out, report = {}, new_report()
    for name, value in sd.items():
        inner = name[len('encoder.'):] if name.startswith('encoder.') else None
        tap_norm = re.fullmatch(r'tap_norms\.(\d+)\.(weight|bias)', name)
        if inner is not None and inner.startswith('norm.'):
            if final_norm_tap is None:
                out[BACKBONE + inner] = value
                report['loaded'].append(name)
            else:
                report['dropped'].append(name)
        elif inner is not None and vit_backbone_key(inner):
            out[BACKBONE + inner] = value
            report['loaded'].append(name)
        elif tap_norm and final_norm_tap is not None and int(tap_norm.group(1)) == final_norm_tap:
            out[f'{BACKBONE}norm.{tap_norm.group(2)}'] = value
            report['converted'].append(f'{name} -> {BACKBONE}norm.{tap_norm.group(2)}')
        else:
            report['dropped'].append(name)
    return _finish(out, report)


def convert_release_vit(checkpoint):
    """LocalMIM release ViT pretraining checkpoint (``{'model': sd}``) -> backbone keys.

    ``cls_token``, ``pos_embed``, ``patch_embed.proj``, ``blocks.*`` keep their names; the norm of
    the last tapped layer (``norm.{last}``, the last block in the release) becomes the final
    ``norm``; the other tap norms, ``decoder.*`` and ``hog_enc.*`` are dropped.
    """
    sd = unwrap_state_dict(checkpoint)
    _require(sd, 'patch_embed.proj.weight', 'not a LocalMIM release ViT checkpoint')
    taps = sorted({int(m.group(1)) for k in sd if (m := re.fullmatch(r'norm\.(\d+)\.weight', k))})
    if not taps:
        raise ValueError("no per-tap 'norm.{i}.weight' keys: not a LocalMIM release ViT checkpoint "
                         '(MAE/timm weights: convert_timm_vit)')
    out, report = {}, new_report()
    for name, value in sd.items():
        tap_norm = re.fullmatch(r'norm\.(\d+)\.(weight|bias)', name)
        if vit_backbone_key(name):
            out[BACKBONE + name] = value
            report['loaded'].append(name)
        elif tap_norm and int(tap_norm.group(1)) == taps[-1]:
            out[f'{BACKBONE}norm.{tap_norm.group(2)}'] = value
            report['converted'].append(f'{name} -> {BACKBONE}norm.{tap_norm.group(2)}')
        else:
            report['dropped'].append(name)
    return _finish(out, report)


def export_timm_vit(checkpoint):
    """Backbone (``backbone.*`` or bare) or ImageClassifier weights -> a timm ``VisionTransformer``
    state dict (contiguous CPU tensors, ready for ``safetensors.torch.save_file``).

    Load it into ``timm.models.VisionTransformer`` with the same img_size/patch/dims (and
    ``global_pool='avg', fc_norm=True`` if ``fc_norm``/``head`` are present).
    Relative position tables and cls-less (windowed) backbones have no timm ViT counterpart: error.
    """
    sd = unwrap_state_dict(checkpoint)
    prefixed = any(k.startswith(BACKBONE) for k in sd)
    out, report = {}, new_report()
    for name, value in sd.items():
        if prefixed and not name.startswith(BACKBONE) and name not in CLASSIFIER_KEYS:
            report['dropped'].append(name)
            continue
        inner = name[len(BACKBONE):] if prefixed and name.startswith(BACKBONE) else name
        if inner.endswith('relative_position_bias_table'):
            raise ValueError(f'{name}: timm VisionTransformer has no relative position bias; cannot export')
        if vit_backbone_key(inner) or inner in ('norm.weight', 'norm.bias') or inner in CLASSIFIER_KEYS:
            out[inner] = value.detach().cpu().clone().contiguous()
            report['converted' if inner != name else 'loaded'].append(
                f'{name} -> {inner}' if inner != name else name)
        else:
            report['dropped'].append(name)
    if 'cls_token' not in out:
        raise ValueError('export_timm_vit: no cls_token (windowed backbones have none); timm ViT needs one')
    report['missing'] = missing_vit_keys(set(out))
    return out, report
