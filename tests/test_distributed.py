"""Multi-process runs as users launch them: ``torchrun --nproc_per_node 2`` on CPU (gloo).

One torchrun job runs the scenarios of tests/dist_scenarios.py (real tiny LocalMIM ViT and Swin
with the shipped epoch-based loop and persistent workers, NaN batches on one rank or on both in
both guard modes, Mask R-CNN and UperNet trained and validated across ranks, the demo's LP-FT
fine-tune from a linear probe's saved classifier); a second runs
``tools/train.py --launcher pytorch`` with a NaN batch on one rank, as a user would.
"""
import glob
import os
import os.path as osp
import socket
import subprocess
import sys

import pytest
import torch
from _data_helpers import real_fashion_mnist_present
from _dense_helpers import make_canvas_set

TESTS_DIR = osp.dirname(osp.abspath(__file__))
REPO_DIR = osp.dirname(TESTS_DIR)
SCENARIOS = ['vit', 'swin', 'nan_raise_one_rank', 'nan_raise_all_ranks', 'nan_skip', 'fsdp', 'mask_rcnn',
             'upernet', 'lpft']
SCALES = ['loss_2px', 'loss_4px', 'loss_8px', 'loss_16px']

pytestmark = pytest.mark.skipif(not real_fashion_mnist_present(),
                                reason='needs Fashion-MNIST (dataset-fashion-mnist) for the pretraining configs')


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def torchrun(*args, log_dir, env):
    """``python -m torch.distributed.run --nproc_per_node 2 ARGS`` with each rank's output in
    ``log_dir`` (a Popen)."""
    command = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2',
               '--master_addr', '127.0.0.1', '--master_port', str(free_port()),
               '--log-dir', str(log_dir), '--redirects', '3', *map(str, args)]
    return subprocess.Popen(command, cwd=REPO_DIR, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def rank_logs(log_dir, stream):
    """{local rank: text of its stdout/stderr} of a torchrun job run with --redirects 3."""
    paths = glob.glob(osp.join(log_dir, '**', f'{stream}.log'), recursive=True)
    return {int(osp.basename(osp.dirname(p))): open(p).read() for p in paths}


def finish(process, what):
    try:
        output, _ = process.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError(f'{what} hung (killed after 600 s)')
    return process.returncode, output


@pytest.fixture(scope='module')
def jobs(tmp_path_factory):
    """Both torchrun jobs, started together; {name: (returncode, output, log dir / out dir)}."""
    canvas_root = make_canvas_set(tmp_path_factory)
    env = dict(os.environ, OMP_NUM_THREADS='1', FMNIST_CANVAS_ROOT=canvas_root,
               FMNIST_SMALL_CANVAS_ROOT=canvas_root,
               PYTHONPATH=os.pathsep.join([REPO_DIR, TESTS_DIR]))
    env.pop('LOCALMIM_DEBUG', None)
    out = tmp_path_factory.mktemp('scenarios')
    # the start of the LP-FT scenario: a probe's classifier of a random encoder on 64 training images
    probe = out / 'probe'
    small = [f'probe_{split}_dataloader.{key}' for split in ('train', 'test')
             for key in ('dataset.num_samples=64', 'num_workers=0')]
    subprocess.run([sys.executable, 'tools/linear_probe.py', osp.join('mm_configs', 'imagenet',
                    'vit-tiny_linprobe-features_fmnist.py'), 'random', '--names', 'random', '--work-dir', probe,
                    '--save-classifier', '--cfg-options', *small], cwd=REPO_DIR, env=env, check=True,
                   capture_output=True)
    env['LOCALMIM_TEST_CLASSIFIER'] = str(probe / 'random_classifier.pth')
    tool = tmp_path_factory.mktemp('tool')
    started = {
        'scenarios': (torchrun('tests/dist_scenarios.py', out, *SCENARIOS, log_dir=out / 'logs', env=env), out),
        'tool': (torchrun('tools/train.py', osp.join(TESTS_DIR, 'configs', 'localmim_tiny_nan_epochs.py'),
                          '--launcher', 'pytorch', '--work-dir', tool / 'work', log_dir=tool / 'logs', env=env),
                 tool),
    }
    return {name: (*finish(process, name), folder) for name, (process, folder) in started.items()}


@pytest.fixture(scope='module')
def results(jobs):
    returncode, output, out = jobs['scenarios']
    assert returncode == 0, output[-5000:] + '\n'.join(rank_logs(out / 'logs', 'stderr').values())[-5000:]
    return {name: [torch.load(out / f'{name}_rank{rank}.pt', weights_only=False) for rank in (0, 1)]
            for name in SCENARIOS}


@pytest.mark.parametrize('name', ['vit', 'swin'])
def test_parameters_stay_identical_across_ranks_and_logs_are_rank_means(results, name):
    ranks = results[name]
    assert ranks[0]['error'] is None and ranks[1]['error'] is None, ranks[0]['error'] or ranks[1]['error']
    params = [r['params'] for r in ranks]
    assert params[0].shape[0] == ranks[0]['params'].shape[0] >= 2  # iterations run
    assert torch.equal(params[0], params[1])  # after every iteration, bit for bit
    assert not torch.equal(params[0][0], params[0][-1])  # and they did train
    for step, logged in enumerate(ranks[0]['logged']):
        local = [r['local'][step] for r in ranks]
        assert local[0] != local[1]  # each rank saw other images and masks
        for key in local[0]:
            assert logged[key] == pytest.approx((local[0][key] + local[1][key]) / 2, rel=1e-6), (step, key)
        assert ranks[1]['logged'][step] == logged  # every rank logs the same means


def test_lpft_starts_from_the_probes_classifier_on_every_rank(results, jobs):
    """load_from puts the probe's backbone and fitted layer into every rank's classifier before the
    first update; the ranks then train the same parameters under bf16 autocast."""
    saved = torch.load(jobs['scenarios'][2] / 'probe' / 'random_classifier.pth', weights_only=True)
    for rank in results['lpft']:
        assert all(torch.equal(rank['loaded'][key], value) for key, value in saved['state_dict'].items())
        assert rank['cast_dtype'] == torch.bfloat16
    params = [rank['params'] for rank in results['lpft']]
    assert params[0].shape[0] == 3 and torch.equal(params[0], params[1])
    assert not torch.equal(params[0][0], params[0][-1])


@pytest.mark.parametrize('name', ['nan_raise_one_rank', 'nan_raise_all_ranks'])
def test_nan_on_some_rank_stops_every_rank_with_the_same_error(results, name):
    ranks = results[name]
    on = '1' if name == 'nan_raise_one_rank' else '0, 1'
    for rank in ranks:
        assert rank['error'].startswith('FloatingPointError: non-finite LocalMIM loss at iteration 3: loss_2px=nan')
        assert rank['error'].endswith(f'(on rank {on} of 2)')
        assert len(rank['params']) == 2  # iterations 1 and 2 completed, 3 stopped before its update
    assert ranks[0]['error'] == ranks[1]['error']
    assert torch.equal(ranks[0]['params'], ranks[1]['params'])
    assert [f for f in ranks[0]['files'] if f.endswith('.pth')] == ['epoch_1.pth']  # no NaN checkpoint


def test_nan_skip_skips_the_update_on_every_rank(results):
    ranks = results['nan_skip']
    assert ranks[0]['error'] is None and ranks[1]['error'] is None
    params = [r['params'] for r in ranks]
    assert torch.equal(params[0], params[1]) and len(params[0]) == 4
    assert torch.isfinite(params[0]).all()
    # iteration 2 (NaN on rank 1 only) and 3 (NaN on both) leave the weights of iteration 1
    assert torch.equal(params[0][1], params[0][0]) and torch.equal(params[0][2], params[0][0])
    assert not torch.equal(params[0][3], params[0][2])  # iteration 4 trains again
    for rank in ranks:
        assert all(rank['logged'][i][k] == 0 for i in (1, 2) for k in ['loss', *SCALES])
        assert all(rank['logged'][i][k] > 0 for i in (0, 3) for k in SCALES)
    assert {'epoch_1.pth', 'epoch_2.pth'} <= set(ranks[0]['files'])


def test_fsdp_flexible_runner_trains_like_ddp_and_keeps_the_guard(results):
    # mmengine's FlexibleRunner + FSDPStrategy (gloo on CPU), GuardedFullyShardedDataParallel:
    # iteration 1 logs what DDP logged on the same weights and batches, iteration 2 has a NaN on
    # rank 1 and is skipped on both ranks (each rank holds its own shard of the parameters).
    fsdp, ddp = results['fsdp'], results['vit']
    for rank in (0, 1):
        assert fsdp[rank]['error'] is None
        assert fsdp[rank]['logged'][0] == pytest.approx(ddp[rank]['logged'][0], rel=1e-5)
        assert all(value == 0 for value in fsdp[rank]['logged'][1].values())
        assert torch.equal(fsdp[rank]['params'][1], fsdp[rank]['params'][0])  # no update at iteration 2
    assert fsdp[0]['params'].shape[1] + fsdp[1]['params'].shape[1] == ddp[0]['params'].shape[1]  # sharded
    assert 'epoch_1.pth' in fsdp[0]['files']


@pytest.mark.parametrize('name, key', [('mask_rcnn', 'coco/bbox_mAP'), ('upernet', 'mIoU')])
def test_dense_validation_gathers_every_rank(results, name, key):
    for rank in results[name]:
        assert rank['cast_dtype'] == torch.bfloat16  # trained under autocast (tools/train.py --amp)
        assert rank['rank_batches'] * 2 == rank['num_val'] == 4  # each rank evaluated half
        assert key in rank['distributed']
        # = one process on all images (BN statistics averaged over ranks before validating)
        assert rank['distributed'] == pytest.approx(rank['alone'], abs=1e-6, nan_ok=True)
    assert results[name][0]['distributed'] == pytest.approx(results[name][1]['distributed'], nan_ok=True)
    seen, alone = results[name][0]['seen'], results[name][0]['alone_seen']  # rank 0 computes the metric
    assert len(seen) == 4 and seen == alone  # from both ranks' images, exactly the single-process results


def test_tools_train_under_torchrun_reports_the_nan_of_one_rank_on_every_rank(jobs):
    returncode, output, folder = jobs['tool']
    assert returncode != 0
    errors = rank_logs(folder / 'logs', 'stderr')
    assert sorted(errors) == [0, 1], output[-3000:]
    for rank, text in errors.items():
        assert text.strip().splitlines()[-1] == (
            'error: non-finite LocalMIM loss at iteration 3: loss_2px=nan, loss_4px=nan, loss_8px=nan, '
            'loss_16px=nan (on rank 0 of 2)'), text[-3000:]
        assert 'Traceback' not in text
    assert sorted(p.name for p in (folder / 'work').glob('*.pth')) == ['epoch_1.pth']
