"""The data-only types of mmengine's own checkpoints, for the weights-only unpickler.

mmengine's stock ``Runner`` (used by mmdet's and mmseg's train scripts) pickles its message hub
into every checkpoint: ``HistoryBuffer`` objects holding numpy arrays, numpy scalars and dtypes.
torch's weights-only unpickler refuses those globals, so without this list a user who trains
with a stock runner could neither resume nor test from their own checkpoint after importing
``localmim``. :data:`MMENGINE_SAFE_GLOBALS` allows exactly these types, for one load at a time
(``torch.serialization.safe_globals`` in :func:`localmim.checkpoint.load_checkpoint_file`):

- numpy: ``ndarray`` (restored from its raw bytes or, for object arrays, from objects that went
  through the same unpickler), ``_reconstruct``, ``dtype`` and its numpy 2 classes, ``scalar``
  (numbers from bytes), under both the numpy 1 (``numpy.core``) and numpy 2 names;
- ``collections.defaultdict`` (hooks' bookkeeping; its factory can only be an allowed type);
- ``HistoryBuffer``, replaced by :class:`_LoadedHistoryBuffer`: its ``__getstate__`` stores the
  class-level dict of statistics methods (``{'mean': HistoryBuffer.mean, ...}``), which pickle
  as ``getattr(HistoryBuffer, 'mean')``, and mmengine's ``__setstate__`` merges that dict into
  the process-wide class attribute. Here ``builtins.getattr`` is replaced by
  :func:`_statistics_method`, which returns only a statistics method of ``HistoryBuffer``
  (``min``, ``max``, ``current``, ``mean`` or one registered on it) and refuses anything else,
  and the loaded buffer checks that the stored methods are exactly these and keeps only its
  data.

Anything else (``os.system``, arbitrary classes, ``getattr`` on other objects) is still refused
without running it.
"""
import collections
import pickle

import numpy as np
from mmengine.logging import HistoryBuffer

__all__ = ['MMENGINE_SAFE_GLOBALS']

_BUFFER_PATH = 'mmengine.logging.history_buffer.HistoryBuffer'
_BUFFER_DATA = {'_log_history', '_count_history', 'max_length'}
_DEFAULT_STATISTICS = ('min', 'max', 'current', 'mean')  # registered by HistoryBuffer.__init__


def _registered_statistic(name):
    """The statistics method ``name`` of ``HistoryBuffer`` (a default one, or one registered
    with ``HistoryBuffer.statistics_method``), or None."""
    if name in _DEFAULT_STATISTICS:
        return getattr(HistoryBuffer, name)
    return HistoryBuffer._statistics_methods.get(name)


class _LoadedHistoryBuffer(HistoryBuffer):
    """What the unpickler builds for a pickled ``HistoryBuffer``; a plain one once restored."""

    def __setstate__(self, state):
        if not isinstance(state, dict) or not _BUFFER_DATA <= set(state) <= _BUFFER_DATA | {
                'statistics_methods'}:
            raise pickle.UnpicklingError(f'{_BUFFER_PATH} with unexpected state '
                                         f'{sorted(state) if isinstance(state, dict) else state!r}')
        methods = state.get('statistics_methods', {})
        tampered = [name for name, method in methods.items()
                    if method is None or _registered_statistic(name) is not method]
        if tampered:
            raise pickle.UnpicklingError(f'{_BUFFER_PATH} maps statistics {tampered} to other '
                                         'methods than the registered ones')
        self.__dict__.update({key: state[key] for key in _BUFFER_DATA})
        self.__class__ = HistoryBuffer
        self._set_default_statistics()  # as HistoryBuffer.__setstate__ does


def _statistics_method(owner, name):
    """Stands in for ``builtins.getattr``: only ``getattr(HistoryBuffer, <statistics method>)``,
    as pickled by ``HistoryBuffer.__getstate__``."""
    method = _registered_statistic(name) if owner is _LoadedHistoryBuffer else None
    if method is None:
        raise pickle.UnpicklingError(f'builtins.getattr({getattr(owner, "__name__", owner)!r}, '
                                     f'{name!r}) is not allowed: only the statistics methods of '
                                     f'{_BUFFER_PATH}')
    return method


def _numpy_globals():
    """numpy's array, dtype and scalar reconstruction, under numpy 1 and numpy 2 names."""
    multiarray = np._core.multiarray if hasattr(np, '_core') else np.core.multiarray
    found = [np.ndarray, np.dtype]
    for package in ('numpy.core', 'numpy._core'):
        found += [(multiarray._reconstruct, f'{package}.multiarray._reconstruct'),
                  (multiarray.scalar, f'{package}.multiarray.scalar')]
    dtypes = getattr(np, 'dtypes', None)  # numpy >= 1.25: one class per dtype
    if dtypes is not None:
        found += [cls for cls in vars(dtypes).values()
                  if isinstance(cls, type) and issubclass(cls, np.dtype)]
    return found


MMENGINE_SAFE_GLOBALS = [
    *_numpy_globals(),
    collections.defaultdict,
    (_LoadedHistoryBuffer, _BUFFER_PATH),
    (_statistics_method, 'builtins.getattr'),
]
