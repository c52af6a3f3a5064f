"""Weights-only checkpoint loading and crash-safe checkpoint writing.

Loading. Every checkpoint is read with ``torch.load(..., weights_only=True)`` (or by
safetensors for ``.safetensors`` files), through :func:`load_checkpoint_file`. Importing
``localmim`` re-registers mmengine's local-file and http(s) ``CheckpointLoader`` schemes to use
it, so ``Runner.resume``, ``load_from`` and ``init_cfg=dict(type='Pretrained', ...)`` of mmdet,
mmseg and localmim models all load weights-only and fail with one clear error naming the file.

mmengine's own checkpoints. A stock mmengine 0.10.7 checkpoint (written by ``mmengine.Runner``,
e.g. through mmdet's or mmseg's train scripts) pickles the message hub's ``HistoryBuffer``
objects, numpy arrays, dtypes and scalars, and, through ``HistoryBuffer.__getstate__``,
``builtins.getattr`` calls that fetch its statistics methods. Every load allows exactly these
data-only types (:data:`localmim.safe_globals.MMENGINE_SAFE_GLOBALS`, scoped to the one
``torch.load`` call), with ``getattr`` replaced by a stand-in that returns only the registered
statistics methods of ``HistoryBuffer``, so such checkpoints resume and test after
``import localmim`` while anything that could run code is still refused. ``localmim.Runner``
writes checkpoints that need none of it (:func:`to_weights_only_safe`): each ``HistoryBuffer``
becomes a plain dict of tensors (:func:`history_buffer_to_dict`, turned back by
:func:`history_buffer_from_dict` on resume), numpy scalars become Python numbers and numpy
arrays tensors; anything else that the weights-only unpickler would refuse is reported when the
checkpoint is written, not when it is resumed. :func:`load_checkpoint_file` accepts more
``safe_globals`` for one load only (e.g. ``argparse.Namespace`` in a release checkpoint that
stored its arguments).

Matching. A checkpoint of another model, or one whose keys carry another prefix, would load
nothing without an error (mmengine loads non-strictly). :func:`check_keys_match` raises one
``CheckpointError`` naming the file when no key matches, and warns with the unmatched keys
when only some do. ``localmim.Runner.load_checkpoint`` (``load_from``, resume,
``tools/test.py``) applies it, and importing ``localmim`` re-registers mmengine's ``Pretrained``
weight initializer (``init_cfg=dict(type='Pretrained', checkpoint=..., prefix=...)``, every
scope) as :class:`PretrainedInit`, which applies it too.

Writing. :func:`atomic_save` and ``localmim.Runner.save_checkpoint`` write to a temporary file
in the destination directory, fsync it and ``os.replace`` it over the destination, so a crash or
kill mid-write leaves the previous checkpoint intact. The ``last_checkpoint`` pointer is written
the same way (:func:`write_text_atomic`), and :func:`find_latest_checkpoint` falls back to the
newest complete ``iter_N.pth`` / ``epoch_N.pth`` if the pointer is missing, empty or dangling.
"""
import collections
import logging
import os
import os.path as osp
import pickle
import re
import zipfile
from urllib.parse import urlparse

import numpy as np
import torch
from mmengine.dist import get_dist_info
from mmengine.logging import HistoryBuffer, print_log
from mmengine.model import PretrainedInit as MMEnginePretrainedInit
from mmengine.model.weight_init import update_init_info
from mmengine.registry import WEIGHT_INITIALIZERS
from mmengine.runner.checkpoint import CheckpointLoader, load_state_dict

from .safe_globals import MMENGINE_SAFE_GLOBALS

__all__ = [
    'CheckpointError', 'load_checkpoint_file', 'atomic_save', 'write_text_atomic', 'commit_file',
    'partial_path', 'to_weights_only_safe', 'history_buffer_to_dict', 'history_buffer_from_dict',
    'is_history_buffer_dict', 'find_latest_checkpoint', 'check_keys_match', 'revise_keys_of',
    'first_nonfinite_tensor', 'PretrainedInit'
]

# Leaf types the weights-only unpickler of torch >= 2.6 accepts without an allow-list.
_SAFE_LEAF_TYPES = (torch.Tensor, torch.Size, torch.dtype, torch.device, bool, int, float,
                    complex, str, bytes, bytearray, type(None))
_HISTORY_BUFFER_KEYS = {'log_history', 'count_history', 'max_length'}
_CHECKPOINT_NAME = re.compile(r'^(?:iter|epoch)_(\d+)\.pth$')


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be loaded: truncated, corrupt or refused as unsafe."""


# ----------------------------------------------------------------------------------- loading
def load_checkpoint_file(path, map_location='cpu', safe_globals=()):
    """Load a checkpoint file weights-only; ``.safetensors`` files through safetensors.

    Args:
        path (str): local file.
        map_location: as for :func:`torch.load`; for ``.safetensors`` a device (str or
            ``torch.device``) or None (cpu).
        safe_globals (Sequence): classes/functions to allow for this one load only, besides
            the data-only types of mmengine's checkpoints (e.g. ``argparse.Namespace`` for a
            release checkpoint that stored its arguments). Use only for types whose
            reconstruction runs no code of the file's choosing.

    Returns:
        dict: the deserialised checkpoint (a plain state dict for ``.safetensors``).

    Raises:
        FileNotFoundError: the file does not exist.
        CheckpointError: the file is truncated/corrupt, or the weights-only unpickler refused
            it (it references a global that is not allow-listed; nothing of it is executed).
    """
    path = osp.expanduser(str(path))
    if not osp.isfile(path):
        raise FileNotFoundError(f'Checkpoint file not found: {path}')
    if path.endswith('.safetensors'):
        return _load_safetensors(path, map_location)
    try:
        with torch.serialization.safe_globals([*MMENGINE_SAFE_GLOBALS, *safe_globals]):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        if 'Weights only load failed' in str(error):
            raise CheckpointError(_refused_message(path, error)) from None
        raise CheckpointError(_damaged_message(path, error)) from None
    except (EOFError, KeyError, zipfile.BadZipFile) as error:
        raise CheckpointError(_damaged_message(path, error)) from None
    except RuntimeError as error:
        if 'PytorchStreamReader' in str(error) or 'zip archive' in str(error):
            raise CheckpointError(_damaged_message(path, error)) from None
        raise CheckpointError(f'Cannot load checkpoint file {path}: {_first_line(error)}') from None


def _damaged_message(path, error):
    return (f'Checkpoint file {path} is truncated or corrupt '
            f'({type(error).__name__}: {_first_line(error)})')


def _load_safetensors(path, map_location):
    from safetensors.torch import load_file
    if map_location is None:
        map_location = 'cpu'
    if not isinstance(map_location, (str, torch.device)):
        raise ValueError(f'Loading {path}: map_location for a .safetensors file must be a '
                         f'device, got {map_location!r}')
    try:
        return load_file(path, device=str(map_location))
    except Exception as error:
        raise CheckpointError(f'Checkpoint file {path} is not a valid safetensors file '
                              f'({type(error).__name__}: {_first_line(error)})') from None


def _first_line(error):
    text = str(error).strip()
    return text.splitlines()[0] if text else 'no details'


def _refused_message(path, error):
    """Our message for torch's long weights-only refusal, naming the offending global."""
    text = str(error)
    found = re.search(r'GLOBAL ([\w.]+)', text)
    if found:
        return (f'Refused to load checkpoint file {path}: it references the disallowed global '
                f'{found.group(1)}, which the weights-only unpickler refuses because unpickling '
                'it could execute arbitrary code; nothing of it was run. If you trust the file, '
                'convert it to a plain state dict (tensors in dicts) or to .safetensors in a '
                'trusted environment.')
    found = re.search(r'Unsupported operand \d+', text)
    if found is None:  # the unpickler's own reason, e.g. from localmim.safe_globals
        found = re.search(r'WeightsUnpickler error:\s*(\S[^\n]*)', text)
    detail = found.group(found.re.groups) if found else _first_line(error)
    return (f'Refused to load checkpoint file {path}: the weights-only unpickler cannot read it '
            f'({detail}); it is corrupt, or a pickle that is not a plain state dict. Nothing of '
            'it was run.')


def load_from_local_weights_only(filename, map_location=None):
    """mmengine ``CheckpointLoader`` scheme for local paths, weights-only."""
    return load_checkpoint_file(filename, map_location)


def load_from_http_weights_only(filename, map_location=None):
    """mmengine ``CheckpointLoader`` scheme for http(s) URLs: download once, load weights-only.

    The file is cached under ``<torch hub dir>/checkpoints``; in a distributed run local rank 0
    of each node downloads while the others wait.
    """
    cache_dir = osp.join(torch.hub.get_dir(), 'checkpoints')
    cached_file = osp.join(cache_dir, osp.basename(urlparse(filename).path))
    rank, world_size = get_dist_info()
    local_rank = int(os.environ.get('LOCAL_RANK', rank))
    if local_rank == 0 and not osp.isfile(cached_file):
        os.makedirs(cache_dir, exist_ok=True)
        torch.hub.download_url_to_file(filename, cached_file, progress=False)
    if world_size > 1:
        torch.distributed.barrier()
    return load_checkpoint_file(cached_file, map_location)


CheckpointLoader.register_scheme(prefixes='', loader=load_from_local_weights_only, force=True)
CheckpointLoader.register_scheme(prefixes=('http://', 'https://'),
                                 loader=load_from_http_weights_only, force=True)


# ---------------------------------------------------------------------------------- matching
def revise_keys_of(state_dict, revise_keys=((r'^module\.', ''),)):
    """The keys of ``state_dict`` after mmengine's ``revise_keys`` (regex, replacement) pairs."""
    keys = list(state_dict)
    for pattern, replacement in revise_keys:
        keys = [re.sub(pattern, replacement, key) for key in keys]
    return keys


def check_keys_match(model_keys, checkpoint_keys, source, warn=False):
    """Raise ``CheckpointError`` naming ``source`` if none of ``checkpoint_keys`` is a model key.

    Args:
        model_keys / checkpoint_keys (Iterable[str]): keys of the model's and the checkpoint's
            state dicts (after any prefix stripping).
        source (str): the checkpoint file, for the messages.
        warn (bool): log a warning listing the unmatched keys when only some match.

    Returns:
        (list, list): model keys missing from the checkpoint, checkpoint keys unknown to the model.
    """
    model_keys, checkpoint_keys = list(model_keys), list(checkpoint_keys)
    known = set(model_keys)
    matched = [key for key in checkpoint_keys if key in known]
    if not matched:
        raise CheckpointError(
            f'no key of checkpoint {source} matches the model: its {len(checkpoint_keys)} keys '
            f'look like {_some(checkpoint_keys)}, the model\'s {len(model_keys)} like '
            f'{_some(model_keys)} (a checkpoint of another model, or another key prefix?)')
    given = set(checkpoint_keys)
    missing = [key for key in model_keys if key not in given]
    unexpected = [key for key in checkpoint_keys if key not in known]
    if warn and (missing or unexpected):
        print_log(f'checkpoint {source} matches {len(matched)} of the model\'s {len(model_keys)} '
                  f'keys; not in the checkpoint: {_some(missing, 20)}; not in the model: '
                  f'{_some(unexpected, 20)}', logger='current', level=logging.WARNING)
    return missing, unexpected


def _some(keys, limit=3):
    shown = ', '.join(keys[:limit])
    return f'{shown}, ... ({len(keys)} in all)' if len(keys) > limit else shown or 'none'


@WEIGHT_INITIALIZERS.register_module(name='Pretrained', force=True)
class PretrainedInit(MMEnginePretrainedInit):
    """mmengine's ``Pretrained`` initializer with weights-only loading and a key-match check.

    Loads ``checkpoint`` once (its ``state_dict`` entry if present, ``module.`` prefixes
    stripped), keeps the keys under ``prefix`` (with the prefix removed) if given, and raises
    one ``CheckpointError`` naming the file when the prefix or the keys match nothing in the
    module. Partial matches load as in mmengine, which logs the unmatched keys.
    """

    def __call__(self, module):
        from mmengine.runner.checkpoint import _load_checkpoint
        what = f'{self.prefix} in model' if self.prefix else 'model'
        print_log(f'load {what} from: {self.checkpoint}', logger='current')
        checkpoint = _load_checkpoint(self.checkpoint, map_location=self.map_location)
        state_dict = checkpoint.get('state_dict', checkpoint)
        metadata = getattr(state_dict, '_metadata', None)
        state_dict = collections.OrderedDict(
            zip(revise_keys_of(state_dict), state_dict.values()))
        if metadata is not None:
            state_dict._metadata = metadata  # per-module versions for _load_from_state_dict
        if self.prefix:
            prefix = self.prefix if self.prefix.endswith('.') else self.prefix + '.'
            keys = list(state_dict)
            state_dict = collections.OrderedDict(
                (key[len(prefix):], value) for key, value in state_dict.items()
                if key.startswith(prefix))
            if not state_dict:
                raise CheckpointError(f'no key of checkpoint {self.checkpoint} starts with the '
                                      f'prefix {prefix!r}: its keys look like {_some(keys)}')
        check_keys_match(module.state_dict().keys(), state_dict.keys(), self.checkpoint)
        load_state_dict(module, state_dict, strict=False, logger='current')
        if hasattr(module, '_params_init_info'):
            update_init_info(module, init_info=self._get_init_info())


def first_nonfinite_tensor(state_dict):
    """``(key, number of NaN/inf values)`` of the first floating tensor with any, else None."""
    for key, value in state_dict.items():
        if (torch.is_tensor(value) and (value.is_floating_point() or value.is_complex())
                and not torch.isfinite(value).all()):
            return key, value.numel() - int(torch.isfinite(value).sum())
    return None


# ----------------------------------------------------------------------------------- writing
def atomic_save(obj, path):
    """``torch.save(obj, path)`` that never leaves a partly written ``path`` behind.

    Writes ``obj`` to a temporary file next to ``path``, fsyncs it and renames it over ``path``
    (``os.replace`` is atomic on POSIX): after a crash ``path`` holds either its old content or
    the complete new one.
    """
    tmp_path = partial_path(path)
    try:
        with open(tmp_path, 'wb') as file:
            torch.save(obj, file)
        commit_file(tmp_path, path)
    except BaseException:
        if osp.exists(tmp_path):
            os.remove(tmp_path)
        raise


def write_text_atomic(text, path):
    """Write ``text`` to ``path`` atomically (temporary file, fsync, rename)."""
    tmp_path = partial_path(path)
    with open(tmp_path, 'w') as file:
        file.write(text)
    commit_file(tmp_path, path)


def commit_file(tmp_path, path):
    """Flush ``tmp_path`` to disk and atomically rename it to ``path``, then sync the directory."""
    with open(tmp_path, 'rb+') as file:
        os.fsync(file.fileno())
    os.replace(tmp_path, path)
    directory = os.open(osp.dirname(osp.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def partial_path(path):
    """Hidden sibling of ``path`` (same directory, so the rename stays on one file system)."""
    directory, name = osp.split(osp.abspath(path))
    return osp.join(directory, f'.{name}.partial')


# ------------------------------------------------------------------ weights-only-safe content
def history_buffer_to_dict(buffer):
    """A ``HistoryBuffer`` as ``{'log_history': (N,) tensor, 'count_history': (N,) tensor,
    'max_length': int}``."""
    return dict(log_history=torch.from_numpy(np.array(buffer._log_history)),
                count_history=torch.from_numpy(np.array(buffer._count_history)),
                max_length=int(buffer.max_length))


def history_buffer_from_dict(state):
    """Inverse of :func:`history_buffer_to_dict`."""
    return HistoryBuffer(state['log_history'].numpy(), state['count_history'].numpy(),
                         state['max_length'])


def is_history_buffer_dict(value):
    return isinstance(value, dict) and set(value) == _HISTORY_BUFFER_KEYS


def to_weights_only_safe(obj, where='checkpoint'):
    """Copy of ``obj`` that ``torch.load(weights_only=True)`` accepts without an allow-list.

    Numpy scalars become Python numbers, numeric numpy arrays tensors (other arrays lists),
    ``HistoryBuffer`` dicts of tensors, dict/list/tuple subclasses (``ConfigDict``,
    ``defaultdict``, named tuples) their plain base type (``OrderedDict`` is kept) and frozensets
    sets. Any other type raises ``TypeError`` naming where it is in ``obj``.
    """
    if isinstance(obj, np.generic):  # before the leaf check: np.float64 is a float subclass
        return obj.item()
    if isinstance(obj, _SAFE_LEAF_TYPES):
        return obj
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind in 'biufc':
            return torch.from_numpy(np.ascontiguousarray(obj))
        return to_weights_only_safe(obj.tolist(), where)
    if isinstance(obj, HistoryBuffer):
        return history_buffer_to_dict(obj)
    if isinstance(obj, dict):
        items = ((to_weights_only_safe(key, f'{where} key {key!r}'),
                  to_weights_only_safe(value, f'{where}[{key!r}]')) for key, value in obj.items())
        is_ordered = isinstance(obj, collections.OrderedDict)
        return collections.OrderedDict(items) if is_ordered else dict(items)
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = [to_weights_only_safe(value, f'{where}[{i}]') for i, value in enumerate(obj)]
        for base in (list, tuple, set):
            if isinstance(obj, base):
                return base(items)
        return set(items)
    raise TypeError(f'Cannot save {where}: a {type(obj).__module__}.{type(obj).__qualname__} '
                    'is not loadable weights-only. Store tensors, Python numbers, strings and '
                    'dicts/lists of them instead.')


# ---------------------------------------------------------------------------------- resuming
def find_latest_checkpoint(work_dir):
    """Path of the checkpoint to auto-resume from in ``work_dir``, or None if there is none.

    Reads the ``last_checkpoint`` pointer written by ``CheckpointHook``; if it is missing, empty
    or points to a missing file, takes the highest-numbered ``iter_N.pth``/``epoch_N.pth`` in
    ``work_dir`` (temporary ``.partial`` files never match).
    """
    pointer = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(pointer):
        with open(pointer) as file:
            target = file.read().strip()
        if target and osp.isfile(target):
            return target
        print_log(f'{pointer} names no existing checkpoint ({target!r}); looking for the newest '
                  f'checkpoint in {work_dir}', logger='current')
    numbered = []
    for name in os.listdir(work_dir) if osp.isdir(work_dir) else []:
        found = _CHECKPOINT_NAME.match(name)
        if found:
            numbered.append((int(found.group(1)), name))
    return osp.join(work_dir, max(numbered)[1]) if numbered else None
