"""``localmim.Runner``: mmengine's Runner with crash-safe, weights-only-loadable checkpoints.

Differences from ``mmengine.runner.Runner`` (everything else is inherited):

- checkpoints are written to a temporary file and renamed into place (``os.replace``), and so
  is the ``last_checkpoint`` pointer: a kill mid-save leaves the previous checkpoint intact;
- their content is made weights-only loadable before writing (``HistoryBuffer`` -> dict of
  tensors, numpy -> Python/tensors; see :mod:`localmim.checkpoint`) and turned back on resume;
- mmengine's ``CheckpointHook`` is replaced by ``localmim.CheckpointHook``, which deletes an
  outdated checkpoint (``max_keep_ckpts``) only after the new one is written;
- ``resume='auto'`` tolerates a missing/empty/dangling ``last_checkpoint`` pointer;
- a checkpoint whose model weights hold a NaN/inf is refused (``FloatingPointError`` naming the
  file and the first bad key) before anything is written, so the previous one stays the latest;
- loading (``load_from``, resume, ``tools/test.py``) a checkpoint of which no key matches the
  model raises one ``CheckpointError`` naming the file; a partial match logs the unmatched keys;
  a model with a ``check_checkpoint_meta(meta, filename)`` method may refuse the file from its
  ``meta`` (``ImageClassifier``: a probe classifier of other features);
- a distributed run wraps the model in ``localmim.GuardedDistributedDataParallel`` (unless the
  config sets ``model_wrapper_cfg``): DDP that ends each step in the model's own guarded update,
  so LocalMIM's non-finite guard decides alike on every rank (see :mod:`localmim.engine.ddp`);
- without CUDA, a distributed launch (``--launcher pytorch``) uses gloo and CPU DDP, and SyncBN
  layers are reverted to BatchNorm (torch's SyncBN needs a GPU);
- a distributed run of a model with BatchNorm layers gets mmengine's ``SyncBuffersHook``: the
  running statistics, which each rank updates from its own batches, are averaged over ranks after
  each training epoch and before each validation, so every rank validates the same model.
- a dataloader dict with a ``type`` builds that localmim data loader (``localmim.DaliImageNetLoader``:
  GPU decoding with NVIDIA DALI, see :mod:`localmim.datasets.dali`);
- the terminal shows a one-line summary instead of the environment, config and hook order,
  which stay in the log file (:mod:`localmim.engine.console`).

Select it with ``runner_type = 'localmim.Runner'`` (the default of ``tools/train.py``).
"""
import os.path as osp

import torch
from mmengine.dist import is_distributed, master_only
from mmengine.fileio import LocalBackend, get_file_backend
from mmengine.hooks import CheckpointHook as MMEngineCheckpointHook
from mmengine.hooks import SyncBuffersHook
from mmengine.model import is_model_wrapper, revert_sync_batchnorm
from mmengine.registry import OPTIMIZERS
from mmengine.runner import Runner as MMEngineRunner
from torch.nn.modules.batchnorm import _BatchNorm

from ..checkpoint import (check_keys_match, commit_file, find_latest_checkpoint,
                          first_nonfinite_tensor, history_buffer_from_dict,
                          is_history_buffer_dict, partial_path, revise_keys_of,
                          to_weights_only_safe, write_text_atomic)
from ..registry import RUNNERS
from .checkpoint_hook import CheckpointHook
from .console import quiet_console

__all__ = ['Runner']

_MMENGINE_CHECKPOINT_HOOK_NAMES = ('CheckpointHook', 'mmengine.CheckpointHook',
                                   MMEngineCheckpointHook)


@RUNNERS.register_module()
class Runner(MMEngineRunner):
    """mmengine Runner whose checkpoints are atomic and load weights-only (see module doc)."""
    _saving = None  # path of the checkpoint being written
    _loading = None  # (file name, revise_keys) of the checkpoint being loaded

    def setup_env(self, env_cfg):
        if self.distributed and not is_distributed() and not torch.cuda.is_available():
            _init_cpu_process_group(self.launcher, env_cfg.get('dist_cfg', {}))
        super().setup_env(env_cfg)

    def build_logger(self, log_level='INFO', log_file=None, **kwargs):
        log_file = log_file or osp.join(self._log_dir, f'{self.timestamp}.log')
        logger = super().build_logger(log_level, log_file, **kwargs)
        quiet_console(logger, log_file)
        return logger

    def wrap_model(self, model_wrapper_cfg, model):
        if self.distributed and model_wrapper_cfg is None:
            model_wrapper_cfg = dict(
                type='localmim.GuardedDistributedDataParallel', broadcast_buffers=False,
                find_unused_parameters=self.cfg.get('find_unused_parameters', False))
            if not torch.cuda.is_available():
                model_wrapper_cfg['device_ids'] = None  # CPU DDP rejects mmengine's [LOCAL_RANK]
        if self.distributed and not torch.cuda.is_available():
            # torch's SyncBatchNorm only runs on GPUs: on CPU each rank normalises its own batch.
            model = revert_sync_batchnorm(model)
        return super().wrap_model(model_wrapper_cfg, model)

    def register_hooks(self, default_hooks=None, custom_hooks=None):
        super().register_hooks(default_hooks, custom_hooks)
        # BatchNorm running statistics drift apart on each rank (plain BN, or SyncBN reverted on
        # CPU): average them before each validation, as mmcv 1.x's evaluation hooks did.
        has_bn = any(isinstance(m, _BatchNorm) for m in self.model.modules())
        if self.distributed and has_bn and not any(isinstance(h, SyncBuffersHook) for h in self.hooks):
            self.register_hook(SyncBuffersHook())

    @staticmethod
    def build_dataloader(dataloader, seed=None, diff_rank_seed=False):
        # a dict with a ``type`` is a localmim data loader (e.g. localmim.DaliImageNetLoader)
        if isinstance(dataloader, dict) and dataloader.get('type') is not None:
            from ..datasets.dali import build_data_loader
            return build_data_loader(dataloader, seed=seed, diff_rank_seed=diff_rank_seed)
        return MMEngineRunner.build_dataloader(dataloader, seed=seed, diff_rank_seed=diff_rank_seed)

    def build_optim_wrapper(self, optim_wrapper):
        # mmengine's optimizer constructor fails on an unknown optimizer type with
        # "None is not a callable object"; say which type instead, as the other registries do.
        for cfg in _optim_wrapper_cfgs(optim_wrapper):
            _check_registered(OPTIMIZERS, cfg['optimizer'].get('type'))
        return super().build_optim_wrapper(optim_wrapper)

    def register_hook(self, hook, priority=None):
        if isinstance(hook, dict) and hook.get('type') in _MMENGINE_CHECKPOINT_HOOK_NAMES:
            hook = dict(hook, type=CheckpointHook)
        super().register_hook(hook, priority)

    def call_hook(self, fn_name, **kwargs):
        super().call_hook(fn_name, **kwargs)
        if fn_name == 'before_save_checkpoint':
            # Runs after every hook added its part, right before the dict is serialised.
            checkpoint = kwargs['checkpoint']
            self._refuse_nonfinite_weights(checkpoint.get('state_dict', {}))
            checkpoint.update(to_weights_only_safe(checkpoint))
        elif fn_name == 'after_load_checkpoint' and self._loading is not None:
            # Runs after the hooks (which may rename keys), before the weights go into the model.
            filename, revise_keys = self._loading
            checkpoint = kwargs['checkpoint']
            state_dict = checkpoint.get('state_dict', checkpoint)
            model = self.model.module if is_model_wrapper(self.model) else self.model
            check_keys_match(model.state_dict().keys(), revise_keys_of(state_dict, revise_keys),
                             filename, warn=True)
            if hasattr(model, 'check_checkpoint_meta'):  # a model that can tell a file it must not load
                model.check_checkpoint_meta(checkpoint.get('meta') or {}, filename)

    def _refuse_nonfinite_weights(self, state_dict):
        found = first_nonfinite_tensor(state_dict)
        if found is not None:
            key, num_bad = found
            raise FloatingPointError(
                f'refusing to save checkpoint {self._saving}: model weight {key} has {num_bad} '
                'non-finite (NaN/inf) values; nothing was written and the previous checkpoint '
                'stays the latest')

    @master_only
    def save_checkpoint(self, out_dir, filename, file_client_args=None, *args,
                        backend_args=None, **kwargs):
        path = self._saving = osp.join(out_dir, filename)
        is_local = file_client_args is None and isinstance(
            get_file_backend(out_dir, backend_args=backend_args), LocalBackend)
        if not is_local:  # object stores replace objects atomically themselves
            return super().save_checkpoint(out_dir, filename, file_client_args, *args,
                                           backend_args=backend_args, **kwargs)
        tmp_path = partial_path(path)
        super().save_checkpoint(out_dir, osp.basename(tmp_path), None, *args,
                                backend_args=backend_args, **kwargs)
        commit_file(tmp_path, path)
        # CheckpointHook records the regular (not best-metric) checkpoint as 'last_ckpt' just
        # before saving it and rewrites the pointer non-atomically afterwards;
        # find_latest_checkpoint copes with a pointer emptied by a kill during that rewrite.
        if self.message_hub.get_info('last_ckpt') == path:
            write_text_atomic(path, osp.join(self.work_dir, 'last_checkpoint'))

    def load_checkpoint(self, filename, map_location='cpu', strict=False,
                        revise_keys=[(r'^module\.', '')]):  # noqa: B006 (mmengine's default)
        self._loading = (filename, revise_keys)
        try:
            checkpoint = super().load_checkpoint(filename, map_location, strict, revise_keys)
        finally:
            self._loading = None
        log_scalars = checkpoint.get('message_hub', {}).get('log_scalars', {})
        for key, value in log_scalars.items():
            if is_history_buffer_dict(value):
                log_scalars[key] = history_buffer_from_dict(value)
        return checkpoint

    def load_or_resume(self):
        if self._resume and self._load_from is None and not self._has_loaded:
            self._load_from = find_latest_checkpoint(self.work_dir)
            if self._load_from is None:
                self.logger.info(f'No checkpoint to resume from in {self.work_dir}; '
                                 'training starts from scratch.')
                self._resume = False
        super().load_or_resume()


def _optim_wrapper_cfgs(optim_wrapper):
    """The optim wrapper config dicts of ``optim_wrapper`` (one, or a dict of them)."""
    if not isinstance(optim_wrapper, dict):
        return []
    if isinstance(optim_wrapper.get('optimizer'), dict):
        return [optim_wrapper]
    return [cfg for cfg in optim_wrapper.values()
            if isinstance(cfg, dict) and isinstance(cfg.get('optimizer'), dict)]


def _check_registered(registry, obj_type):
    """mmengine's KeyError for a ``type`` string that ``registry`` (in the default scope) lacks."""
    if not isinstance(obj_type, str):
        return
    with registry.switch_scope_and_registry(None) as scoped:
        if scoped.get(obj_type) is None:
            raise KeyError(f'{obj_type} is not in the {scoped.scope}::{scoped.name} registry')


def _init_cpu_process_group(launcher, dist_cfg):
    """Start a gloo process group for a CPU-only distributed run (mmengine assumes CUDA)."""
    if launcher != 'pytorch':
        raise RuntimeError(f'Distributed training without CUDA needs --launcher pytorch '
                           f'(torchrun), got --launcher {launcher}.')
    kwargs = {}
    if dist_cfg.get('timeout') is not None:
        import datetime
        kwargs['timeout'] = datetime.timedelta(seconds=dist_cfg['timeout'])
    torch.distributed.init_process_group(backend='gloo', **kwargs)
