"""Shorten (or lengthen) a training run with its whole schedule: ``tools/train.py --max-epochs N``
and ``--max-iters N``.

Overriding ``train_cfg.max_epochs`` alone truncates a cosine schedule (the run stops with the lr
still high) and keeps the warm-up as long as before. :func:`rescale_schedule` sets the new
length and multiplies every time point of every ``param_scheduler`` entry (``begin``, ``end``,
``T_max``, ``milestones``, ``step_size``) by ``new length / old length``, so warm-up, decay and
steps keep their proportions. Entries with ``convert_to_iter_based=True`` keep fractional
epochs (mmengine multiplies them by the iterations per epoch); other entries are rounded to
whole epochs / iterations, at least one long. One that ends before the run does (a warm-up) and
was at least two long stays at least two long: mmengine's schedulers update only at steps inside
[begin, end), so a one-step ``LinearLR`` warm-up would never leave its ``start_factor`` (the lr
would stay at 0.001x for the whole run).
"""
import math

__all__ = ['rescale_schedule']

_LENGTH_KEYS = {'max_epochs': 'epochs', 'max_iters': 'iterations'}


def rescale_schedule(cfg, max_epochs=None, max_iters=None):
    """Set ``cfg.train_cfg.max_epochs`` (or ``max_iters``) and rescale ``cfg.param_scheduler``.

    Args:
        cfg (Config): a training config; changed in place.
        max_epochs / max_iters (int): the new length, exactly one of them, matching the
            config's loop (``max_epochs`` for an epoch-based loop, ``max_iters`` for an
            iteration-based one).

    Returns:
        float: the factor applied to the schedule (new length / old length).

    Raises:
        ValueError: both or neither given, not positive, or not the config's kind of length.
    """
    if (max_epochs is None) == (max_iters is None):
        raise ValueError('give exactly one of max_epochs and max_iters')
    key, new = ('max_epochs', max_epochs) if max_epochs is not None else ('max_iters', max_iters)
    if new < 1:
        raise ValueError(f'--{key.replace("_", "-")} must be at least 1, got {new}')
    loop = cfg.get('train_cfg') or {}
    old = loop.get(key)
    if old is None:
        other = next((name for name in _LENGTH_KEYS if name in loop), None)
        hint = (f'; it trains for train_cfg.{other}={loop[other]} {_LENGTH_KEYS[other]}: use '
                f'--{other.replace("_", "-")}') if other else ''
        raise ValueError(f'--{key.replace("_", "-")} needs a config with train_cfg.{key}, which '
                         f'this one lacks{hint}')
    factor = new / old
    by_epoch = key == 'max_epochs'
    schedulers = cfg.get('param_scheduler') or []
    for scheduler in schedulers if isinstance(schedulers, (list, tuple)) else [schedulers]:
        # An entry counting in the loop's unit that ends at (or after) the run's end still ends
        # there; one counting in the other unit (mmdet's iteration warm-up in an epoch-based
        # run) is scaled like the rest.
        same_unit = scheduler.get('by_epoch', True) == by_epoch
        _rescale_scheduler(scheduler, factor, old if same_unit else math.inf, new)
    loop[key] = new
    return factor


def _rescale_scheduler(scheduler, factor, old_length, new_length):
    """Scale the time points of one ``param_scheduler`` entry (a dict) in place; an ``end`` at
    or beyond ``old_length`` becomes ``new_length``."""
    fractional = scheduler.get('convert_to_iter_based', False)

    def scaled(value, at_least=1):
        value = value * factor
        return value if fractional else max(at_least, round(value))

    begin = old_begin = scheduler.get('begin', 0)
    if begin:
        scheduler['begin'] = begin = scaled(begin, at_least=0)
    end = scheduler.get('end', math.inf)
    if end != math.inf:
        if end >= old_length:  # runs to the end: ends with the run
            scheduler['end'] = new_length if fractional else max(new_length, begin + 1)
        else:  # e.g. a warm-up: see the module docstring, a 1-step ramp never ends
            scheduler['end'] = scaled(end) if fractional else max(scaled(end), begin + min(2, end - old_begin))
    if scheduler.get('T_max') is not None:
        scheduler['T_max'] = scaled(scheduler['T_max'])
    if scheduler.get('milestones') is not None:
        scheduler['milestones'] = [scaled(milestone) for milestone in scheduler['milestones']]
    if scheduler.get('step_size') is not None:
        scheduler['step_size'] = scaled(scheduler['step_size'])
