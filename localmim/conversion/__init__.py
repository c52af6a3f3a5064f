"""Checkpoint conversion between the LocalMIM release, MAE/timm and this toolkit.

Every converter is a pure function ``state_dict -> (new_state_dict, report)`` where ``report`` has
lists ``loaded`` (copied as is, maybe renamed), ``converted`` (values changed), ``dropped``
(not carried over). :func:`print_report` prints it; ``tools/convert_checkpoint.py`` is the CLI.
"""
import torch


def new_report():
    return {'loaded': [], 'converted': [], 'dropped': []}


def print_report(report, out=print, limit=8):
    """Summarise a conversion report: counts and the first ``limit`` keys of each list."""
    for kind in ('loaded', 'converted', 'dropped', 'missing'):
        keys = report.get(kind, [])
        if not keys and kind == 'missing':
            continue
        shown = ', '.join(keys[:limit]) + (f', ... (+{len(keys) - limit})' if len(keys) > limit else '')
        out(f'{kind:>9}: {len(keys):4d}  {shown}')


def unwrap_state_dict(checkpoint):
    """The tensor dict inside a checkpoint: under 'state_dict', 'model' or 'module', or bare."""
    for key in ('state_dict', 'model', 'module'):
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get(key), dict):
            return checkpoint[key]
    if isinstance(checkpoint, dict) and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        return checkpoint
    raise KeyError(f'no state dict found in checkpoint (top-level keys: {sorted(checkpoint)[:10]})')


def detect_format(state):
    """Guess the source format of a state dict: 'release-vit', 'release-swin', 'localmim' or 'timm-vit'."""
    keys = set(state)
    if any(k.startswith('hog_enc.') for k in keys) or any(k.startswith('decoder.') for k in keys):
        return 'release-swin' if any(k.startswith('encoder.layers.') for k in keys) else 'release-vit'
    if any(k.startswith(('encoder.', 'backbone.')) for k in keys) or any(k.startswith('tap_norms.') for k in keys):
        return 'localmim'
    if 'cls_token' in keys and any(k.startswith('blocks.') for k in keys):
        return 'timm-vit'
    if any(k.startswith('layers.') for k in keys):
        return 'timm-swin'
    raise ValueError(f'cannot tell the checkpoint format from its keys (first: {sorted(keys)[:8]})')
