"""``localmim.Runner``: mmengine's Runner with crash-safe, weights-only-loadable checkpoints.

Differences from ``mmengine.runner.Runner`` (everything else is inherited):

- checkpoints are written to a temporary file and renamed into place (``os.replace``), and so
  is the ``last_checkpoint`` pointer: a kill mid-save leaves the previous checkpoint intact;
- their content is made weights-only loadable before writing (``HistoryBuffer`` -> dict of
  tensors, numpy -> Python/tensors; see :mod:`localmim.checkpoint`) and turned back on resume;
- ``resume='auto'`` tolerates a missing/empty/dangling ``last_checkpoint`` pointer;
- without CUDA, a distributed launch (``--launcher pytorch``) uses gloo and CPU DDP.

Select it with ``runner_type = 'localmim.Runner'`` (the default of ``tools/train.py``).
"""
import os.path as osp

import torch
from mmengine.dist import is_distributed, master_only
from mmengine.fileio import LocalBackend, get_file_backend
from mmengine.runner import Runner as MMEngineRunner

from ..checkpoint import (commit_file, find_latest_checkpoint, history_buffer_from_dict,
                          is_history_buffer_dict, partial_path, to_weights_only_safe,
                          write_text_atomic)
from ..registry import RUNNERS

__all__ = ['Runner']


@RUNNERS.register_module()
class Runner(MMEngineRunner):
    """mmengine Runner whose checkpoints are atomic and load weights-only (see module doc)."""

    def setup_env(self, env_cfg):
        if self.distributed and not is_distributed() and not torch.cuda.is_available():
            _init_cpu_process_group(self.launcher, env_cfg.get('dist_cfg', {}))
        super().setup_env(env_cfg)

    def wrap_model(self, model_wrapper_cfg, model):
        if self.distributed and model_wrapper_cfg is None and not torch.cuda.is_available():
            # mmengine's default passes device_ids=[LOCAL_RANK], which CPU DDP rejects.
            model_wrapper_cfg = dict(
                type='MMDistributedDataParallel', device_ids=None, broadcast_buffers=False,
                find_unused_parameters=self.cfg.get('find_unused_parameters', False))
        return super().wrap_model(model_wrapper_cfg, model)

    def call_hook(self, fn_name, **kwargs):
        super().call_hook(fn_name, **kwargs)
        if fn_name == 'before_save_checkpoint':
            # Runs after every hook added its part, right before the dict is serialised.
            checkpoint = kwargs['checkpoint']
            checkpoint.update(to_weights_only_safe(checkpoint))

    @master_only
    def save_checkpoint(self, out_dir, filename, file_client_args=None, *args,
                        backend_args=None, **kwargs):
        is_local = file_client_args is None and isinstance(
            get_file_backend(out_dir, backend_args=backend_args), LocalBackend)
        if not is_local:  # object stores replace objects atomically themselves
            return super().save_checkpoint(out_dir, filename, file_client_args, *args,
                                           backend_args=backend_args, **kwargs)
        path = osp.join(out_dir, filename)
        tmp_path = partial_path(path)
        super().save_checkpoint(out_dir, osp.basename(tmp_path), None, *args,
                                backend_args=backend_args, **kwargs)
        commit_file(tmp_path, path)
        # CheckpointHook records the regular (not best-metric) checkpoint as 'last_ckpt' just
        # before saving it and rewrites the pointer non-atomically afterwards;
        # find_latest_checkpoint copes with a pointer emptied by a kill during that rewrite.
        if self.message_hub.get_info('last_ckpt') == path:
            write_text_atomic(path, osp.join(self.work_dir, 'last_checkpoint'))

    def load_checkpoint(self, filename, *args, **kwargs):
        checkpoint = super().load_checkpoint(filename, *args, **kwargs)
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
