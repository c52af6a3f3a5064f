"""Shared pieces of the checkpoint converters: unwrapping, reports, format detection.

Every converter is a pure function ``checkpoint -> (new_state_dict, report)`` where ``report``
lists ``loaded`` (kept, maybe re-prefixed), ``converted`` (renamed or changed: 'source -> target'),
``dropped`` (left out) and ``missing`` (expected keys the source lacks).
"""
import torch


def unwrap_state_dict(checkpoint):
    """The state dict of a checkpoint: ``checkpoint['state_dict']``/``['model']``/``['module']`` or itself."""
    if not isinstance(checkpoint, dict):
        raise TypeError(f'expected a checkpoint dict, got {type(checkpoint).__name__}')
    for key in ('state_dict', 'model', 'module'):
        if key in checkpoint and isinstance(checkpoint[key], dict):
            return checkpoint[key]
    bad = [k for k, v in checkpoint.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"checkpoint has no 'state_dict'/'model' entry and non-tensor entries {bad[:5]}")
    return checkpoint


def new_report():
    return dict(loaded=[], converted=[], dropped=[], missing=[])


def print_report(report, out=print, limit=6):
    """Print counts and the first ``limit`` keys of each list of a conversion report."""
    for kind in ('loaded', 'converted', 'dropped', 'missing'):
        keys = report.get(kind, [])
        shown = ', '.join(keys[:limit]) + (f', ... (+{len(keys) - limit} more)' if len(keys) > limit else '')
        out(f'{kind:>9}: {len(keys):4d}  {shown}')


def detect_format(state):
    """Guess a state dict's source: 'release-vit', 'release-swin', 'localmim-vit', 'localmim-swin',
    'timm-vit' (also MAE), 'timm-swin', or 'backbone-vit' / 'backbone-swin' (``backbone.*`` keys:
    a converted backbone, or a fine-tuned / downstream model of ours)."""
    keys = set(state)
    if any(k.startswith('backbone.blocks.') for k in keys):
        return 'backbone-vit'
    if any(k.startswith('backbone.layers.') for k in keys):
        return 'backbone-swin'
    if any(k.startswith(('hog_enc.', 'decoder.')) for k in keys):
        return 'release-swin' if any(k.startswith('encoder.layers.') for k in keys) else 'release-vit'
    if any(k.startswith('tap_norms.') for k in keys):
        return 'localmim-swin' if any(k.startswith('encoder.layers.') for k in keys) else 'localmim-vit'
    if 'cls_token' in keys and any(k.startswith('blocks.') for k in keys):
        return 'timm-vit'
    if any(k.startswith('layers.') for k in keys):
        return 'timm-swin'
    raise ValueError(f'cannot tell the checkpoint format from its keys (first: {sorted(keys)[:8]})')
