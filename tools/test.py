"""Evaluate a checkpoint with an OpenMMLab config (default scope mmdet, mmseg, localmim, none).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out results.pkl]
                         [--show-dir DIR [--show-interval N]] [--allow-partial]
                         [--cfg-options k=v ...] [--launcher ...] [--debug]

A checkpoint that misses model keys or holds tensors of other shapes is refused with one error
listing them (the uncovered weights would stay random); ``--allow-partial`` evaluates anyway.

An error is printed as one line ``error: ...`` (exit status 1); ``--debug`` or
``LOCALMIM_DEBUG=1`` shows its traceback.
"""
import argparse

# first: importing localmim silences the dependencies' known-harmless warnings
import localmim  # noqa: F401  (also: weights-only checkpoint loaders)

# isort: split
from mmengine.config import DictAction

import localmim.registry  # noqa: F401  (the localmim scope)
from localmim.engine.launch import (build_runner, explain_empty_datasets, explain_unknown_types,
                                    load_config, run_tool, set_local_rank_env)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test a checkpoint from a config file.')
    parser.add_argument('config', help='config file path')
    parser.add_argument('checkpoint', help='checkpoint file (.pth or .safetensors)')
    parser.add_argument('--work-dir', help='directory for the evaluation logs')
    parser.add_argument('--out', help='dump the raw predictions to this .pkl file')
    parser.add_argument('--show-dir', help='save drawn predictions under this directory')
    parser.add_argument('--show-interval', type=int, default=1,
                        help='with --show-dir, draw every N-th test batch (default: every one)')
    parser.add_argument('--allow-partial', action='store_true',
                        help='evaluate even if the checkpoint misses model keys or has tensors '
                        'of other shapes')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries, e.g. test_dataloader.batch_size=1')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    parser.add_argument('--debug', action='store_true',
                        help='show the traceback of an error (also LOCALMIM_DEBUG=1)')
    args = parser.parse_args(argv)
    set_local_rank_env(args.local_rank)
    return args


def add_dump_metric(cfg, out_file):
    """Append a metric that pickles the raw predictions to ``out_file``."""
    if not out_file.endswith(('.pkl', '.pickle')):
        raise ValueError(f'--out must be a .pkl or .pickle file, got {out_file}')
    dump_type = 'mmdet.DumpDetResults' if cfg.get('default_scope') == 'mmdet' else 'DumpResults'
    dump = dict(type=dump_type, out_file_path=out_file)
    evaluator = cfg.test_evaluator
    cfg.test_evaluator = [*evaluator, dump] if isinstance(evaluator, list) else [evaluator, dump]


def enable_drawing(cfg, show_dir, interval=1):
    """Turn on the config's visualization hook, every ``interval`` batches, and point its
    output to ``show_dir`` (mmseg's hook draws only every ``interval``-th batch, 50 in its
    configs: nothing at all on a test set of fewer batches)."""
    hook = cfg.get('default_hooks', {}).get('visualization')
    if hook is None:
        raise ValueError('--show-dir needs a visualization hook in default_hooks')
    hook['draw'] = True
    hook['interval'] = interval
    if cfg.get('default_scope') == 'mmdet':
        hook['test_out_dir'] = show_dir
    else:
        cfg.visualizer['save_dir'] = show_dir


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options, args.launcher, args.work_dir)
    cfg.load_from = args.checkpoint
    if args.out is not None:
        add_dump_metric(cfg, args.out)
    if args.show_dir is not None:
        enable_drawing(cfg, args.show_dir, args.show_interval)
    if not args.allow_partial:
        cfg.custom_hooks = [*(cfg.get('custom_hooks') or []),
                            dict(type='localmim.CompleteCheckpointHook', source=args.checkpoint)]
    with explain_unknown_types(cfg, args.config), explain_empty_datasets(cfg):
        runner = build_runner(cfg)
        return runner.test()


if __name__ == '__main__':
    run_tool(main)
