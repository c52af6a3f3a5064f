"""Config loading and runner building shared by ``tools/train.py`` and ``tools/test.py``."""
import os
import os.path as osp

from mmengine.config import Config
from mmengine.registry import RUNNERS

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
    return RUNNERS.build(cfg)


def set_local_rank_env(local_rank):
    """Export ``--local-rank`` (given by the legacy ``torch.distributed.launch``) as LOCAL_RANK."""
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(local_rank)
