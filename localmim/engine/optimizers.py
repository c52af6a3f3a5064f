"""Optimizers taken from timm and registered for configs: ``type='localmim.Lars'``.

timm's ``Lars`` (LARS, You et al. 2017) is what MAE's linear probe uses (MAE's own LARS applies
the trust ratio only to parameters with ndim > 1 and even without weight decay: use
``always_adapt=True`` and the constructor's ``no_decay_options=dict(always_adapt=False)``).
"""
from timm.optim import Lars

from ..registry import OPTIMIZERS

OPTIMIZERS.register_module(name='Lars', module=Lars)

__all__ = ['Lars']
