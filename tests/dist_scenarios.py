"""Scenarios of tests/test_distributed.py, run as real 2-process jobs on CPU (gloo):

    torchrun --nproc_per_node 2 tests/dist_scenarios.py OUT_DIR SCENARIO [SCENARIO ...]

Each scenario builds ``localmim.Runner`` from a real config with ``launcher='pytorch'`` (as
``tools/train.py --launcher pytorch`` does) and trains; every rank saves what the test checks to
``OUT_DIR/<scenario>_rank<rank>.pt``. A scenario's exception is recorded, not raised, so the next
scenario runs in the same process group (every rank raises at the same point, or none does).
"""
import gc
import os
import os.path as osp
import sys

import numpy as np
import torch
from mmengine.config import Config
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.registry import METRICS

TESTS_DIR = osp.dirname(osp.abspath(__file__))
REPO_DIR = osp.dirname(TESTS_DIR)
sys.path.insert(0, TESTS_DIR)
import engine_toys  # noqa: E402,F401  (NaNImageHook)

from localmim.engine.launch import build_runner  # noqa: E402

TINY_VIT = osp.join(TESTS_DIR, 'configs', 'localmim_tiny_epochs.py')
TINY_SWIN = osp.join(REPO_DIR, 'mm_configs', 'pretrain', 'swin_localmim-tiny_fmnist.py')
MASK_RCNN = osp.join(REPO_DIR, 'mm_configs', 'coco', 'mask-rcnn_vit-tiny_simplefpn_fmnist-canvas.py')
UPERNET = osp.join(REPO_DIR, 'mm_configs', 'ade20k', 'upernet_vit-tiny_fmnist-canvas.py')
FINETUNE = osp.join(REPO_DIR, 'mm_configs', 'imagenet', 'vit-tiny_ft-short_fmnist.py')
# loading in the main process (the vit and swin scenarios keep the configs' persistent workers)
MAIN = {'train_dataloader.num_workers': 0, 'train_dataloader.persistent_workers': False}
# trained under bf16 autocast, as `tools/train.py --amp` does (mmcv's nms and RoIAlign included)
DENSE_SHORT_RUN = {'train_cfg.max_iters': 2, 'train_cfg.val_interval': 2, 'train_dataloader.batch_size': 2,
                   'train_dataloader.num_workers': 0, 'val_dataloader.num_workers': 0,
                   'val_dataloader.batch_size': 1, 'default_hooks.checkpoint.interval': 2,
                   'default_hooks.logger.interval': 1, 'optim_wrapper.type': 'localmim.AmpOptimWrapper'}


def unwrap(model):
    return model.module if hasattr(model, 'module') else model


class Recorder(Hook):
    """Per iteration: this rank's own losses (the model's forward output), the logged losses
    (``train_step``'s output) and all parameters flattened after the update."""
    priority = 'LOWEST'

    def __init__(self):
        self.local, self.logged, self.params = [], [], []

    def before_train(self, runner):
        def record(module, args, output):
            if module.training and isinstance(output, dict):
                self.local.append({k: float(v) for k, v in output.items()})
        unwrap(runner.model).register_forward_hook(record)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.logged.append({k: float(v) for k, v in outputs.items()})
        self.params.append(torch.cat([p.detach().flatten() for p in unwrap(runner.model).parameters()]))


def build(name, config, out_dir, options=None, hooks=()):
    cfg = Config.fromfile(config)
    cfg.merge_from_dict(options or {})
    cfg.launcher = 'pytorch'
    cfg.work_dir = osp.join(out_dir, name)
    cfg.experiment_name = name  # the same on every rank; fresh logger and message hub per scenario
    cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + list(hooks)
    return cfg, build_runner(cfg)


def pretrain(name, config, out_dir, options=None, hooks=()):
    _, runner = build(name, config, out_dir, options, hooks)
    recorder = Recorder()
    runner.register_hook(recorder)
    error = None
    try:
        runner.train()
    except Exception as exception:  # noqa: BLE001 (recorded for the test)
        error = f'{type(exception).__name__}: {exception}'
    return dict(error=error, local=recorder.local, logged=recorder.logged,
                params=torch.stack(recorder.params) if recorder.params else None,
                files=sorted(os.listdir(runner.work_dir)))


def numbers(result):
    """Every number in one metric result (nested dicts, lists, tensors, arrays), in order."""
    if isinstance(result, dict):
        return [x for value in result.values() for x in numbers(value)]
    if isinstance(result, (list, tuple)):
        return [x for value in result for x in numbers(value)]
    if isinstance(result, (torch.Tensor, np.ndarray)):
        return np.asarray(result, dtype=np.float64).ravel().tolist()
    return [float(result)] if isinstance(result, (int, float)) else []


def fingerprints(results):
    """Sorted (count, position-weighted sum) of each result: equal lists <=> the same results."""
    prints = []
    for values in map(numbers, results):
        weights = 1 + np.arange(len(values)) / max(len(values), 1)
        prints.append((len(values), round(float(np.dot(values, weights)), 3)))
    return sorted(prints)


def keep_results(metric):
    """Make ``metric`` keep the fingerprints of the (gathered) results it computes its value from."""
    compute = metric.compute_metrics

    def compute_and_keep(results):
        metric.seen = fingerprints(results)
        return compute(results)
    metric.compute_metrics = compute_and_keep


def evaluate_alone(runner, cfg):
    """The validation metric computed by this process alone over the whole validation set (no
    sampler split, no gathering), with the trained model, one image at a time."""
    model = unwrap(runner.model).eval()
    loader = runner.val_dataloader
    metric = METRICS.build(cfg.val_evaluator)
    metric.dataset_meta = loader.dataset.metainfo
    with torch.no_grad():
        for index in range(len(loader.dataset)):
            batch = loader.collate_fn([loader.dataset[index]])
            outputs = model.test_step(batch)
            metric.process(batch, [sample.to_dict() for sample in outputs])
    seen = fingerprints(metric.results)
    values = metric.compute_metrics(metric.results)
    return {f'{metric.prefix}/{key}' if metric.prefix else key: value for key, value in values.items()}, seen


def dense(name, config, out_dir):
    cfg, runner = build(name, config, out_dir, DENSE_SHORT_RUN)
    runner.train()  # 2 iterations, then validation
    metric = runner.val_evaluator.metrics[0]
    keep_results(metric)
    distributed = runner.val_loop.run()  # each rank half of the images, results gathered on rank 0
    alone, alone_seen = evaluate_alone(runner, cfg)
    return dict(distributed={k: float(v) for k, v in distributed.items()},
                alone={k: float(v) for k, v in alone.items()}, seen=getattr(metric, 'seen', None),
                alone_seen=alone_seen, cast_dtype=runner.optim_wrapper.cast_dtype,
                num_val=len(runner.val_dataloader.dataset), rank_batches=len(runner.val_dataloader))


class LoadedState(Hook):
    """The model's weights when training starts: after ``load_from``, before the first update."""

    def before_train(self, runner):
        self.state = {k: v.detach().clone() for k, v in unwrap(runner.model).state_dict().items()}


def lpft(name, out_dir):
    """The demo's fine-tune as `tools/train.py --amp` runs it: from a linear probe's saved classifier
    (``LOCALMIM_TEST_CLASSIFIER``, written by ``tools/linear_probe.py --save-classifier``)."""
    _, runner = build(name, FINETUNE, out_dir, {
        'load_from': os.environ['LOCALMIM_TEST_CLASSIFIER'], 'train_cfg.max_iters': 3, 'train_cfg.val_interval': 3,
        'train_dataloader.batch_size': 4, 'val_dataloader.dataset.num_samples': 16, 'val_dataloader.num_workers': 0,
        'val_dataloader.persistent_workers': False, 'optim_wrapper.type': 'localmim.AmpOptimWrapper', **MAIN})
    loaded, recorder = LoadedState(), Recorder()
    runner.register_hook(loaded)
    runner.register_hook(recorder)
    runner.train()
    return dict(loaded=loaded.state, params=torch.stack(recorder.params), cast_dtype=runner.optim_wrapper.cast_dtype)


TWO_EPOCHS = {'train_cfg.max_epochs': 2, **MAIN}
FSDP = {'runner_type': 'FlexibleRunner', 'strategy': dict(type='FSDPStrategy', model_wrapper=dict(
    type='localmim.GuardedFullyShardedDataParallel', device_id='cpu', use_orig_params=True))}


def nan_at(at_iter, ranks=None):
    return dict(type='NaNImageHook', at_iter=at_iter, ranks=ranks)


SCENARIOS = {
    'vit': lambda out: pretrain('vit', TINY_VIT, out, {'train_cfg.max_epochs': 2}),
    'swin': lambda out: pretrain('swin', TINY_SWIN, out, {
        'train_dataloader.dataset.num_samples': 8, 'train_dataloader.batch_size': 2,
        'train_cfg.max_epochs': 1, 'default_hooks.logger.interval': 1}),
    'nan_raise_one_rank': lambda out: pretrain('nan_raise_one_rank', TINY_VIT, out, TWO_EPOCHS, [nan_at(3, [1])]),
    'nan_raise_all_ranks': lambda out: pretrain('nan_raise_all_ranks', TINY_VIT, out, TWO_EPOCHS, [nan_at(3)]),
    'nan_skip': lambda out: pretrain('nan_skip', TINY_VIT, out, {**TWO_EPOCHS, 'model.nonfinite': 'skip'},
                                     [nan_at(2, [1]), nan_at(3)]),
    'fsdp': lambda out: pretrain('fsdp', TINY_VIT, out, {
        'train_cfg.max_epochs': 1, 'model.nonfinite': 'skip', **MAIN, **FSDP}, [nan_at(2, [1])]),
    'mask_rcnn': lambda out: dense('mask_rcnn', MASK_RCNN, out),
    'upernet': lambda out: dense('upernet', UPERNET, out),
    'lpft': lambda out: lpft('lpft', out),
}


def main(out_dir, *names):
    torch.set_num_threads(1)
    for name in names:
        result = SCENARIOS[name](out_dir)
        torch.save(result, osp.join(out_dir, f'{name}_rank{get_rank()}.pt'))
        gc.collect()  # the finished runner's loader workers stop now, not during the next scenario


if __name__ == '__main__':
    main(*sys.argv[1:])
