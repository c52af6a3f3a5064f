"""Config loading, runner building and error reporting shared by ``tools/train.py`` and
``tools/test.py``.

The tools report a failure as one line ``error: <message>`` and exit status 1
(:func:`run_tool`); ``--debug`` or ``LOCALMIM_DEBUG=1`` shows the traceback instead. A config
``type`` that no registry holds is reported with the config key that names it and the closest
registered names (:func:`explain_unknown_types`); a dataset built from an empty folder, with
that folder (:func:`explain_empty_datasets`).
"""
import collections
import contextlib
import difflib
import importlib.util
import os
import os.path as osp
import re
import sys

import torch
from mmengine.config import Config
from mmengine.registry import RUNNERS, Registry
from mmengine.registry import root as mmengine_root

DEFAULT_RUNNER_TYPE = 'localmim.Runner'


def load_config(config_path, cfg_options=None, launcher='none', work_dir=None):
    """Read a config file and apply the command line's overrides.

    The work dir is, by priority: ``work_dir``, the config's ``work_dir``, then
    ``./work_dirs/<config file name without extension>``.
    """
    cfg = Config.fromfile(config_path)
    cfg.launcher = launcher
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(config_path))[0])
    return cfg


def build_runner(cfg):
    """Build the config's ``runner_type`` (default ``localmim.Runner``) in its default scope.

    Works for ``default_scope`` mmdet, mmseg, localmim or none: ``localmim.Runner`` is looked
    up by its scope prefix, and each scope's registries import their modules lazily.
    """
    if 'runner_type' not in cfg:
        cfg.runner_type = DEFAULT_RUNNER_TYPE
    check_strategy(cfg)
    return RUNNERS.build(cfg)


# mmengine FlexibleRunner strategies that need a package of their own
_STRATEGY_PACKAGES = {'DeepSpeedStrategy': 'deepspeed', 'ColossalAIStrategy': 'colossalai'}


def check_strategy(cfg):
    """One clear error for a FlexibleRunner ``strategy`` that cannot run here: its package is
    missing, or it would start a process group without GPUs (mmengine's init needs CUDA)."""
    strategy = cfg.get('strategy') or {}
    name = str(strategy.get('type', '')).rsplit('.', 1)[-1]
    package = _STRATEGY_PACKAGES.get(name)
    if package is not None and importlib.util.find_spec(package) is None:
        raise ImportError(f"strategy {name} needs the {package} package (pip install {package}); or "
                          "shard with strategy=dict(type='FSDPStrategy') (see "
                          "mm_configs/pretrain/localmim_vit-h_fsdp_800e_in1k.py), or drop runner_type and "
                          "strategy for DDP with localmim.Runner")
    if (name and cfg.get('launcher', 'none') != 'none' and not torch.cuda.is_available()
            and not torch.distributed.is_initialized()):
        raise RuntimeError(f'strategy {name} (FlexibleRunner) needs GPUs to start its process group; '
                           'without CUDA drop runner_type and strategy: localmim.Runner runs DDP over gloo')


def set_local_rank_env(local_rank):
    """Export ``--local-rank`` (given by the legacy ``torch.distributed.launch``) as LOCAL_RANK."""
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(local_rank)


# ------------------------------------------------------------------------------ error reports
class UnknownTypeError(KeyError):
    """A config's ``type`` that no registry holds; the message suggests the closest names."""

    def __str__(self):
        return str(self.args[0])


_REGISTRY_MISS = re.compile(r'(?P<type>\S+) is not in the (?P<scope>[\w.]+)::(?P<name>[\w ]+?) '
                            r'registry')


@contextlib.contextmanager
def explain_unknown_types(cfg=None, config_path=None):
    """Turn mmengine's ``'X is not in the S::N registry ...'`` KeyError raised inside the block
    into an :class:`UnknownTypeError` naming the config key(s) that give ``type='X'`` and the
    closest registered names, e.g. ``unknown type "VisionTransformr" at model.encoder.type in
    cfg.py (not in the localmim::model registry): did you mean "localmim.VisionTransformer"?``
    """
    try:
        yield
    except KeyError as error:
        found = _REGISTRY_MISS.search(str(error.args[0]) if error.args else '')
        if found is None or isinstance(error, UnknownTypeError):
            raise
        obj_type, scope, name = found.group('type', 'scope', 'name')
        tree = cfg.to_dict() if isinstance(cfg, Config) else cfg
        keys = _type_keys(tree, obj_type) if tree is not None else []
        where = ''
        if keys:
            where = ' at ' + ', '.join(key for key, _ in keys)
            where += f' in {config_path}' if config_path else ''
        message = (f'unknown type "{keys[0][1] if keys else obj_type}"{where} (not in the '
                   f'{scope}::{name} registry): {_suggestion(obj_type, name)}')
        raise UnknownTypeError(message) from error


# mmengine's BaseDataset and torch's samplers on a dataset without samples.
_EMPTY_DATASET_ERRORS = ('need at least one array to concatenate',
                         'num_samples should be a positive integer value, but got num_samples=0')


@contextlib.contextmanager
def explain_empty_datasets(cfg):
    """Turn the obscure errors of a dataset without samples raised inside the block (mmengine's
    "need at least one array to concatenate", torch's "num_samples=0") into one ``ValueError``
    naming the dataloader and its empty or missing folders (``data_root`` joined with each
    ``data_prefix`` entry)."""
    try:
        yield
    except ValueError as error:
        if not any(text in str(error) for text in _EMPTY_DATASET_ERRORS):
            raise
        empty = [(key, folder) for key, folder in _dataset_folders(cfg) if _has_no_files(folder)]
        if not empty:
            raise
        first = empty[0][0]  # dataloaders are built in the order train, val, test
        where = ', '.join(folder + (' does not exist' if not osp.isdir(folder) else ' is empty')
                          for key, folder in empty if key == first)
        raise ValueError(f'the dataset of {first} has no samples: {where}') from error


def _dataset_folders(cfg):
    """(dataloader key, folder) of the image / annotation folders of each dataloader's dataset."""
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        dataset = (cfg.get(key) or {}).get('dataset') or {}
        root = dataset.get('data_root') or ''
        prefixes = dataset.get('data_prefix') or {}
        prefixes = prefixes.values() if isinstance(prefixes, dict) else [prefixes]
        folders = [osp.join(root, prefix) for prefix in prefixes if isinstance(prefix, str)] or [root]
        for folder in dict.fromkeys(folders):
            if folder:
                yield key, folder


def _has_no_files(folder):
    return not any(files for _, _, files in os.walk(folder))


def _type_keys(cfg, obj_type, path=''):
    """(dotted path, value) of the ``type`` entries of ``cfg`` that name ``obj_type`` (also
    without the scope prefix that ``localmim.registry.build_model`` adds)."""
    if isinstance(cfg, dict):
        value = cfg.get('type')
        names = isinstance(value, str) and (value == obj_type or obj_type.endswith('.' + value))
        found = [(f'{path}type', value)] if names else []
        for key, value in cfg.items():
            found += _type_keys(value, obj_type, f'{path}{key}.')
        return found
    if isinstance(cfg, (list, tuple)):
        return [key for i, value in enumerate(cfg)
                for key in _type_keys(value, obj_type, f'{path[:-1]}[{i}].')]
    return []


def _suggestion(obj_type, name):
    """'did you mean "A" or "B"?' over every registry of the tree of the registry that missed
    (mmengine's root registry ``name`` and its descendants: localmim, mmdet, ... children).
    Names of scoped registries are given with their scope, which works in any default scope."""
    root = next((r for r in vars(mmengine_root).values()
                 if isinstance(r, Registry) and r.name == name), None)
    if root is None:
        return 'no registry of that name to suggest from'
    spellings = collections.defaultdict(list)  # registered name -> how a config can write it
    for registry in _registry_tree(root):
        registry.import_from_location()
        for registered in registry.module_dict:
            scoped = registry is not root
            spellings[registered].append(f'{registry.scope}.{registered}' if scoped else registered)
    bare_type = obj_type.rsplit('.', 1)[-1]
    close = difflib.get_close_matches(bare_type, list(spellings), n=3, cutoff=0.6)
    options = [spelling for registered in close for spelling in sorted(spellings[registered])][:3]
    if not options:
        return 'no registered name is close to it'
    return 'did you mean ' + ' or '.join(f'"{option}"' for option in options) + '?'


def _registry_tree(registry):
    """``registry`` and all its descendants."""
    found = [registry]
    for child in registry.children.values():
        found += _registry_tree(child)
    return found


def error_message(error):
    """One line describing ``error``: its message with whitespace collapsed; for an error
    re-raised from a DataLoader worker, the original exception's message."""
    text = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    if 'Original Traceback (most recent call last)' in text:
        head, _, trace = text.partition('Original Traceback (most recent call last)')
        last = [line for line in trace.splitlines() if line and not line[0].isspace()]
        if last:
            where = head.strip().removeprefix('Caught ').split(' in ', 1)[-1].rstrip('.')
            text = f'{last[-1].split(": ", 1)[-1]} (in {where})'
    text = ' '.join(text.split())
    return text or type(error).__name__


def run_tool(main, argv=None):
    """Run a command line tool's ``main(argv)``. An exception is reported as one line
    ``error: <message>`` on stderr and exit status 1; with ``--debug`` among the arguments or
    ``LOCALMIM_DEBUG=1`` it propagates with its traceback instead."""
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = '--debug' in argv or os.environ.get('LOCALMIM_DEBUG', '0') not in ('', '0')
    try:
        return main(argv)
    except Exception as error:  # noqa: BLE001 (reported, not swallowed: exit status 1)
        if debug:
            raise
        print(f'error: {error_message(error)}', file=sys.stderr, flush=True)
        sys.exit(1)
