"""tools/train.py --max-epochs / --max-iters: the lr schedule is rescaled, not truncated.

The lr of every iteration comes from mmengine's own schedulers, built from the rescaled config as
the Runner builds them; it is compared with the schedule written out by hand (linear warm-up,
then cosine to the minimum over the rest of the shortened run).
"""
import math
import os.path as osp
import runpy

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import PARAM_SCHEDULERS

from localmim.engine.schedule import rescale_schedule

REPO_DIR = osp.dirname(osp.dirname(osp.abspath(__file__)))
PRETRAIN = osp.join(REPO_DIR, 'mm_configs', 'pretrain')


def lrs_per_iteration(cfg, iters_per_epoch, base_lr=1.0, total=None):
    """lr of every training iteration under ``cfg.param_scheduler`` (mmengine's schedulers), for
    ``total`` iterations (default: the config's epochs)."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base_lr)
    schedulers = []
    for spec in cfg.param_scheduler:
        spec = dict(spec)
        kind = PARAM_SCHEDULERS.get(spec.pop('type'))
        if spec.pop('convert_to_iter_based', False):
            schedulers.append(kind.build_iter_from_epoch(optimizer, **spec, epoch_length=iters_per_epoch))
        else:
            schedulers.append(kind(optimizer, **spec))
    total = total or cfg.train_cfg.max_epochs * iters_per_epoch
    lrs = []
    for _ in range(total):
        lrs.append(optimizer.param_groups[0]['lr'])
        for scheduler in schedulers:
            scheduler.step()
    return lrs


def warmup_cosine(total, warmup, start_factor, min_lr, base_lr=1.0):
    """The schedule written out: linear warm-up from start_factor * base_lr at iteration 0 to
    base_lr at iteration ``warmup - 1`` (mmengine's LinearLR), then half a cosine from base_lr to
    min_lr over the remaining iterations."""
    lrs = []
    for i in range(total):
        if i < warmup:
            lrs.append(base_lr * (start_factor + (1 - start_factor) * i / (warmup - 1)))
        else:
            t = (i - warmup) / (total - warmup)
            lrs.append(min_lr + (base_lr - min_lr) * (1 + math.cos(math.pi * t)) / 2)
    return lrs


def warmup_then_steps(loop, length, warmup, milestones, steps_by_epoch=False):
    """A config of ``length`` iterations or epochs (``loop``: 'max_iters' / 'max_epochs'): a linear
    warm-up over ``warmup`` iterations, then the lr x0.1 at each milestone."""
    kind = 'IterBasedTrainLoop' if loop == 'max_iters' else 'EpochBasedTrainLoop'
    return Config(dict(
        train_cfg={'type': kind, loop: length},
        param_scheduler=[
            dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=warmup),
            dict(type='MultiStepLR', by_epoch=steps_by_epoch, begin=0, end=length, milestones=milestones)]))


def test_max_epochs_shortens_warmup_and_cosine_together():
    cfg = Config.fromfile(osp.join(PRETRAIN, 'localmim_vit-b_1600e_in1k.py'))  # 40 warm-up epochs
    assert rescale_schedule(cfg, max_epochs=8) == pytest.approx(8 / 1600)
    assert cfg.train_cfg.max_epochs == 8
    iters_per_epoch = 50  # 8 epochs x 50: 10 warm-up iterations (40/1600 of the run)
    lrs = lrs_per_iteration(cfg, iters_per_epoch)
    expected = warmup_cosine(400, 10, start_factor=1e-4, min_lr=1e-6)
    torch.testing.assert_close(torch.tensor(lrs), torch.tensor(expected), rtol=1e-6, atol=1e-9)
    assert lrs[-1] < 0.01  # decayed to the minimum, not cut off at the top


def test_overriding_max_epochs_alone_truncates_the_schedule():
    # Why the flag exists: the same config with only train_cfg.max_epochs changed stops with the
    # lr still at its peak (and the warm-up 40 times too long for the run).
    cfg = Config.fromfile(osp.join(PRETRAIN, 'localmim_vit-b_1600e_in1k.py'))
    cfg.train_cfg.max_epochs = 8
    assert max(lrs_per_iteration(cfg, 50)) < 0.25


def test_max_iters_rescales_an_iteration_schedule_and_milestones():
    cfg = Config(dict(
        train_cfg=dict(type='IterBasedTrainLoop', max_iters=1000),
        param_scheduler=[
            dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=100),
            dict(type='MultiStepLR', by_epoch=False, begin=0, end=1000, milestones=[600, 900])]))
    rescale_schedule(cfg, max_iters=100)
    assert cfg.train_cfg.max_iters == 100
    assert (cfg.param_scheduler[0].end, cfg.param_scheduler[1].end) == (10, 100)
    assert cfg.param_scheduler[1].milestones == [60, 90]


def test_a_short_run_keeps_a_warmup_that_ends():
    # 3000 iterations with a 50-iteration warm-up cut to 80: 50 * 80 / 3000 rounds to 1, and a
    # 1-step LinearLR in mmengine never leaves start_factor (the demo's Mask R-CNN trained at
    # 0.001x its lr). The warm-up stays 2 long, so the run reaches its lr at the second iteration.
    cfg = warmup_then_steps('max_iters', 3000, warmup=50, milestones=[2400, 2850])
    rescale_schedule(cfg, max_iters=80)
    assert cfg.param_scheduler[0].end == 2
    lrs = lrs_per_iteration(cfg, 80, total=80)
    expected = [0.001] + [1.0] * 63 + [0.1] * 12 + [0.01] * 4  # milestones 64 and 76
    torch.testing.assert_close(torch.tensor(lrs), torch.tensor(expected), rtol=1e-6, atol=1e-9)


def test_epoch_run_keeps_the_iteration_warmup_in_proportion():
    # mmdet's 1x schedule: 500 warm-up iterations, steps at epochs 8 and 11 of 12
    cfg = warmup_then_steps('max_epochs', 12, warmup=500, milestones=[8, 11], steps_by_epoch=True)
    rescale_schedule(cfg, max_epochs=3)
    assert cfg.param_scheduler[0].end == 125
    assert (cfg.param_scheduler[1].end, cfg.param_scheduler[1].milestones) == (3, [2, 3])


def test_wrong_kind_of_length_is_one_clear_error(tmp_path):
    cfg = Config.fromfile(osp.join(PRETRAIN, 'localmim_vit-tiny_fmnist.py'))
    with pytest.raises(ValueError, match='--max-iters needs a config with train_cfg.max_iters, '
                       'which this one lacks; it trains for train_cfg.max_epochs=4 epochs: use '
                       '--max-epochs'):
        rescale_schedule(cfg, max_iters=10)
    parse_args = runpy.run_path(osp.join(REPO_DIR, 'tools', 'train.py'))['parse_args']
    args = parse_args(['cfg.py', '--max-epochs', '2'])
    assert (args.max_epochs, args.max_iters) == (2, None)
    with pytest.raises(SystemExit):  # one or the other
        parse_args(['cfg.py', '--max-epochs', '2', '--max-iters', '5'])
