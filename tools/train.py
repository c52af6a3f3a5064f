"""Train with an OpenMMLab config (default scope mmdet, mmseg, localmim or none).

    python tools/train.py CONFIG [--work-dir DIR] [--amp] [--auto-scale-lr] [--resume [CKPT]]
                                 [--max-epochs N | --max-iters N] [--tensorboard]
                                 [--cfg-options k=v ...] [--launcher none|pytorch|slurm|mpi]
                                 [--debug]

``--max-epochs`` / ``--max-iters`` shorten (or lengthen) the run together with its lr schedule:
warm-up and decay keep their proportions (:mod:`localmim.engine.schedule`). ``--tensorboard``
also writes the logged scalars (every loss, lr) and, for LocalMIM pretraining, reconstruction
pictures to ``<work dir>/<timestamp>/vis_data/`` for TensorBoard (:mod:`localmim.engine.tensorboard`).
``--resume`` alone resumes from the work dir's latest checkpoint; with a path, from that file.
The runner is the config's ``runner_type``, by default ``localmim.Runner`` (atomic,
weights-only-loadable checkpoints; gloo on machines without CUDA). An error is printed as one
line ``error: ...`` (exit status 1); ``--debug`` or ``LOCALMIM_DEBUG=1`` shows its traceback.
"""
import argparse

# first: importing localmim silences the dependencies' known-harmless warnings
import localmim  # noqa: F401  (also: weights-only checkpoint loaders)

# isort: split
from mmengine.config import DictAction
from mmengine.logging import print_log

import localmim.registry  # noqa: F401  (the localmim scope)
from localmim.engine.launch import (build_runner, explain_empty_datasets, explain_unknown_types,
                                    load_config, run_tool, set_local_rank_env)
from localmim.engine.schedule import rescale_schedule
from localmim.engine.tensorboard import enable_tensorboard


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a model from a config file.')
    parser.add_argument('config', help='config file path')
    parser.add_argument('--work-dir', help='directory for logs and checkpoints')
    parser.add_argument('--amp', action='store_true',
                        help='mixed precision: bf16 where the device has it (CPU too), else fp16 '
                        'with loss scaling; force one with --cfg-options optim_wrapper.dtype=float16')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the lr by total batch size / auto_scale_lr.base_batch_size')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from this checkpoint, or alone: from the latest in the '
                        'work dir')
    length = parser.add_mutually_exclusive_group()
    length.add_argument('--max-epochs', type=int,
                        help='train this many epochs (epoch-based configs), rescaling warm-up and '
                        'lr decay to the new length')
    length.add_argument('--max-iters', type=int,
                        help='train this many iterations (iteration-based configs), rescaling '
                        'warm-up and lr decay to the new length')
    parser.add_argument('--tensorboard', action='store_true',
                        help='also log to TensorBoard: losses, lr and (LocalMIM pretraining) '
                        'reconstruction pictures')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries, e.g. train_dataloader.batch_size=64 '
                        '(use --max-epochs/--max-iters to change the length)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    parser.add_argument('--debug', action='store_true',
                        help='show the traceback of an error (also LOCALMIM_DEBUG=1)')
    args = parser.parse_args(argv)
    set_local_rank_env(args.local_rank)
    return args


def enable_amp(cfg):
    """Switch the config's OptimWrapper to ``localmim.AmpOptimWrapper``: bf16 autocast where the
    device has it (CPU included), fp16 with dynamic loss scaling elsewhere; a config forces one
    with ``optim_wrapper.dtype``."""
    wrapper_type = cfg.optim_wrapper.get('type', 'OptimWrapper')
    if wrapper_type in ('AmpOptimWrapper', 'localmim.AmpOptimWrapper'):
        print_log('AMP is already enabled in the config.', logger='current')
        return
    if wrapper_type not in ('OptimWrapper', 'mmengine.OptimWrapper'):
        raise ValueError(f'--amp needs optim_wrapper.type OptimWrapper, got {wrapper_type}')
    cfg.optim_wrapper.type = 'localmim.AmpOptimWrapper'
    cfg.optim_wrapper.setdefault('dtype', 'auto')


def enable_auto_scale_lr(cfg):
    auto_scale_lr = cfg.get('auto_scale_lr') or {}
    if 'enable' not in auto_scale_lr or 'base_batch_size' not in auto_scale_lr:
        raise ValueError('--auto-scale-lr needs auto_scale_lr = dict(enable=False, '
                         'base_batch_size=N) in the config')
    cfg.auto_scale_lr.enable = True


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options, args.launcher, args.work_dir)
    if args.amp:
        enable_amp(cfg)
    if args.auto_scale_lr:
        enable_auto_scale_lr(cfg)
    if args.max_epochs is not None or args.max_iters is not None:
        rescale_schedule(cfg, args.max_epochs, args.max_iters)
    if args.tensorboard:
        enable_tensorboard(cfg)
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    with explain_unknown_types(cfg, args.config), explain_empty_datasets(cfg):
        runner = build_runner(cfg)
        runner.train()


if __name__ == '__main__':
    run_tool(main)
