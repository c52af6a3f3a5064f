"""tools/train.py, tools/test.py and tools/dist_train.sh end to end, in subprocesses, on CPU.

The toy config (tests/configs/toy_regression.py) trains a 58-parameter regressor for 6
iterations with checkpoints every 2, zeroing random inputs like MIM masks; its components come
from tests/engine_toys.py. ``localmim.IterationSeedHook`` makes the random draws after a resume
equal those of an uninterrupted run.
"""
import json
import os
import os.path as osp
import pickle
import socket
import subprocess
import sys

import pytest
import torch

from localmim.checkpoint import load_checkpoint_file
from localmim.engine.launch import build_runner, load_config

TESTS_DIR = osp.dirname(osp.abspath(__file__))
REPO_DIR = osp.dirname(TESTS_DIR)
CONFIGS = osp.join(TESTS_DIR, 'configs')
if TESTS_DIR not in sys.path:
    sys.path.insert(0, TESTS_DIR)
from engine_toys import ToyRegressionDataset, ToyRegressor  # noqa: E402


def run(command, **env):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO_DIR, TESTS_DIR]),
               OMP_NUM_THREADS='1', **env)
    return subprocess.run(command, cwd=REPO_DIR, env=env, capture_output=True, text=True,
                          timeout=300)


def check(result):
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def train(config, work_dir, *args):
    return run([sys.executable, 'tools/train.py', osp.join(CONFIGS, config),
                '--work-dir', str(work_dir), *args])


def read_losses(work_dir, rank=0):
    """{iteration: loss} from the ToyLossRecorderHook file; a re-run iteration keeps its last."""
    with open(osp.join(work_dir, f'losses_rank{rank}.txt')) as file:
        return {int(i): float(loss) for i, loss in (line.split() for line in file)}


@pytest.fixture(scope='module')
def reference_run(tmp_path_factory):
    """An uninterrupted 6-iteration run."""
    work_dir = tmp_path_factory.mktemp('reference')
    check(train('toy_regression.py', work_dir))
    return work_dir


def test_train_writes_checkpoints_and_test_evaluates_them(reference_run, tmp_path):
    work_dir = reference_run
    checkpoint = osp.join(work_dir, 'iter_6.pth')
    assert open(osp.join(work_dir, 'last_checkpoint')).read() == checkpoint
    out_file = tmp_path / 'predictions.pkl'
    check(run([sys.executable, 'tools/test.py', osp.join(CONFIGS, 'toy_regression.py'),
               checkpoint, '--work-dir', str(tmp_path), '--out', str(out_file)]))

    # independent evaluation of the checkpoint's weights
    model = ToyRegressor()
    model.load_state_dict(load_checkpoint_file(checkpoint)['state_dict'])
    dataset = ToyRegressionDataset(size=8, seed=1)
    with torch.no_grad():
        predictions = model.net(dataset.inputs)
    expected_mse = ((predictions - dataset.targets) ** 2).mean().item()

    [log_json] = [osp.join(root, name) for root, _, names in os.walk(tmp_path)
                  for name in names if name.endswith('.json') and 'vis_data' not in root]
    with open(log_json) as file:
        metrics = json.load(file)
    assert metrics['toy/mse'] == pytest.approx(expected_mse, rel=1e-5)
    with open(out_file, 'rb') as file:  # our own dump, written by mmengine's DumpResults
        dumped = pickle.load(file)
    torch.testing.assert_close(torch.stack([d['pred'] for d in dumped]), predictions)


def test_sigkill_mid_save_then_resume_continues_like_an_uninterrupted_run(reference_run,
                                                                           tmp_path):
    # The run is SIGKILLed halfway through writing iter_4.pth.
    killed = train('toy_regression_killed.py', tmp_path)
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert not (tmp_path / 'iter_4.pth').exists()
    assert (tmp_path / '.iter_4.pth.partial').exists()
    assert open(tmp_path / 'last_checkpoint').read() == str(tmp_path / 'iter_2.pth')
    assert load_checkpoint_file(tmp_path / 'iter_2.pth')['meta']['iter'] == 2

    check(train('toy_regression.py', tmp_path, '--resume'))
    reference = read_losses(reference_run)
    resumed = read_losses(tmp_path)
    assert sorted(resumed) == [1, 2, 3, 4, 5, 6]
    assert resumed == reference  # iterations 3-6 re-run after the resume are bit-identical
    final = load_checkpoint_file(tmp_path / 'iter_6.pth')['state_dict']
    expected = load_checkpoint_file(reference_run / 'iter_6.pth')['state_dict']
    for key in expected:
        assert torch.equal(final[key], expected[key])


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def test_two_process_cpu_training_keeps_ranks_in_sync(tmp_path):
    # 2 ranks x batch 2 see the same 4 samples per step as a single process with batch 4; the
    # random input dropping is off so that both compute the same mean gradient.
    options = ['train_dataloader.batch_size=2', 'train_cfg.max_iters=2', 'model.drop_ratio=0.0']
    check(run(['bash', 'tools/dist_train.sh', osp.join(CONFIGS, 'toy_regression.py'), '2',
               '--work-dir', str(tmp_path / 'ddp'), '--cfg-options', *options],
              PYTHON=sys.executable, PORT=str(free_port())))
    weights = [json.load(open(tmp_path / f'ddp/weights_rank{rank}.json')) for rank in (0, 1)]
    assert weights[0] == weights[1]
    losses = [read_losses(tmp_path / 'ddp', rank) for rank in (0, 1)]
    assert losses[0] != losses[1]  # the ranks trained on different halves of each batch

    cfg = load_config(osp.join(CONFIGS, 'toy_regression.py'), work_dir=str(tmp_path / 'single'),
                      cfg_options=dict(model=dict(drop_ratio=0.0), train_cfg=dict(max_iters=2)))
    cfg.experiment_name = 'single_process_reference'
    build_runner(cfg).train()
    single_losses = read_losses(tmp_path / 'single')
    for step in (1, 2):  # mean of the two half-batch losses = the full-batch loss
        assert (losses[0][step] + losses[1][step]) / 2 == pytest.approx(single_losses[step],
                                                                        rel=1e-5)
    single = json.load(open(tmp_path / 'single/weights_rank0.json'))
    torch.testing.assert_close(torch.tensor(weights[0]), torch.tensor(single), rtol=0, atol=1e-6)
