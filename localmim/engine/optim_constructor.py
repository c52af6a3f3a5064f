"""Layer-wise lr decay and "no weight decay on 1-D params, tokens and tables" for any model.

``optim_wrapper = dict(constructor='localmim.LayerDecayOptimWrapperConstructor',
optimizer=dict(type='AdamW', lr=..., weight_decay=0.05), paramwise_cfg=dict(layer_decay_rate=0.65))``
works unchanged for mmdet, mmseg, classification and pretraining models (rate 1.0 there).

- The backbone is ``model.backbone`` or else ``model.encoder``; its
  ``get_layer_depth(name, prefix)`` gives (layer id, number of layers); every other trainable
  parameter (necks, heads, decoders) gets the top id, i.e. no decay.
- lr scale = rate ** (num_layers - 1 - layer_id); the group's lr is base lr x scale.
- No weight decay on parameters with ndim <= 1 (norms, biases, layer scale) and on the names
  returned by ``backbone.no_weight_decay()`` (relative to the backbone) and
  ``model.no_weight_decay()`` (relative to the model): position tables, cls/mask tokens.
  ``decay_tokens=True`` decays the tokens (names ending in ``_token``, e.g. ``cls_token``,
  ``mask_token``) all the same, as the LocalMIM/MAE pretraining releases do; tables stay exempt.
- Frozen parameters (``requires_grad=False``) are left out.
"""
import torch.nn as nn
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor

from ..registry import OPTIM_WRAPPER_CONSTRUCTORS


def find_backbone(model):
    """(prefix, module) of ``model.backbone`` or ``model.encoder``, or ('', None)."""
    for name in ('backbone', 'encoder'):
        module = getattr(model, name, None)
        if isinstance(module, nn.Module):
            return name + '.', module
    return '', None


def no_weight_decay_names(model):
    """Full parameter names listed by the model's and its backbone's ``no_weight_decay()``."""
    names = set(model.no_weight_decay()) if hasattr(model, 'no_weight_decay') else set()
    prefix, backbone = find_backbone(model)
    if backbone is not None and hasattr(backbone, 'no_weight_decay'):
        names |= {prefix + n for n in backbone.no_weight_decay()}
    return names


def is_token(name):
    """A learned token (``cls_token``, ``mask_token``, ...), by its parameter name."""
    return name.rsplit('.', 1)[-1].endswith('_token')


def layer_decay_param_groups(model, base_lr, weight_decay, layer_decay_rate=1.0, no_decay_options=None,
                             decay_tokens=False):
    """Parameter groups, one per (layer id, with/without weight decay), top layer first.

    Each group: ``params``, ``lr`` (base_lr x lr_scale), ``lr_scale``, ``weight_decay``,
    ``layer_id``, ``param_names``; groups without weight decay also get ``no_decay_options``.
    """
    prefix, backbone = find_backbone(model)
    if layer_decay_rate != 1.0 and not hasattr(backbone, 'get_layer_depth'):
        raise TypeError(f'layer_decay_rate={layer_decay_rate} needs model.backbone or model.encoder with '
                        f'get_layer_depth(); {type(model).__name__} has '
                        f'{type(backbone).__name__ if backbone is not None else "neither"}')
    skip = no_weight_decay_names(model)
    groups = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if layer_decay_rate != 1.0:
            layer_id, num_layers = backbone.get_layer_depth(name, prefix)
            if not name.startswith(prefix):  # necks, heads, decoders: the top id
                layer_id = num_layers - 1
            scale = layer_decay_rate ** (num_layers - 1 - layer_id)
        else:
            layer_id, scale = 0, 1.0
        decay = param.ndim > 1 and (name not in skip or (decay_tokens and is_token(name)))
        key = (layer_id, decay)
        if key not in groups:
            groups[key] = dict(params=[], param_names=[], lr=base_lr * scale, lr_scale=scale,
                               weight_decay=weight_decay if decay else 0.0, layer_id=layer_id)
            if not decay:
                groups[key].update(no_decay_options or {})
        groups[key]['params'].append(param)
        groups[key]['param_names'].append(name)
    return [groups[k] for k in sorted(groups, key=lambda k: (-k[0], not k[1]))]


FUSED_OPTIMIZERS = ('Adam', 'AdamW')


def with_fused_kernel(optimizer_cfg, model):
    """``optimizer_cfg`` with ``fused=True`` when it is Adam/AdamW, says nothing of ``fused`` or
    ``foreach``, and every parameter of ``model`` is on a CUDA device (one kernel for the whole
    update instead of a dozen per parameter group). Anything else is returned unchanged."""
    kind = optimizer_cfg.get('type')
    kind = getattr(kind, '__name__', kind)
    params = list(model.parameters())
    if (kind in FUSED_OPTIMIZERS and not {'fused', 'foreach'} & set(optimizer_cfg) and params
            and all(p.is_cuda for p in params)):
        return dict(optimizer_cfg, fused=True)
    return optimizer_cfg


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class LayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """Optimizer wrapper with layer-wise lr decay and MAE's weight-decay rules (see module doc).

    ``paramwise_cfg`` keys: ``layer_decay_rate`` (default 1.0: no decay), ``no_decay_options``
    (extra optimizer options of the groups without weight decay, e.g. ``dict(always_adapt=False)``
    so that timm's Lars leaves 1-D parameters unadapted, as MAE's LARS does) and ``decay_tokens``
    (default False: cls/mask tokens are exempt; True: decayed, the pretraining releases' rule).
    Other keys are rejected: this constructor replaces mmengine's paramwise rules instead of
    combining with them. Adam/AdamW use torch's fused kernel on CUDA (:func:`with_fused_kernel`;
    ``optimizer.fused=False`` opts out).
    """

    def __init__(self, optim_wrapper_cfg, paramwise_cfg=None):
        paramwise_cfg = dict(paramwise_cfg or {})
        unknown = set(paramwise_cfg) - {'layer_decay_rate', 'no_decay_options', 'decay_tokens'}
        if unknown:
            raise KeyError(f'LayerDecayOptimWrapperConstructor: unsupported paramwise_cfg keys {sorted(unknown)} '
                           "(supported: 'layer_decay_rate', 'no_decay_options', 'decay_tokens')")
        self.layer_decay_rate = float(paramwise_cfg.get('layer_decay_rate', 1.0))
        self.no_decay_options = dict(paramwise_cfg.get('no_decay_options', {}))
        self.decay_tokens = bool(paramwise_cfg.get('decay_tokens', False))
        super().__init__(optim_wrapper_cfg, None)
        # a non-empty paramwise_cfg makes mmengine's __call__ go through add_params
        self.paramwise_cfg = dict(layer_decay_rate=self.layer_decay_rate)

    def __call__(self, model):
        self.optimizer_cfg = with_fused_kernel(self.optimizer_cfg, model)
        return super().__call__(model)

    def add_params(self, params, module, **kwargs):
        groups = layer_decay_param_groups(module, self.base_lr, self.base_wd or 0.0, self.layer_decay_rate,
                                          self.no_decay_options, self.decay_tokens)
        for group in groups:
            group.pop('param_names')
        params.extend(groups)
        print_log(f'layer-decay optimizer: {len(groups)} parameter groups, rate {self.layer_decay_rate}, '
                  f'lr scales {min(g["lr_scale"] for g in groups):.3g}..1', logger='current')
