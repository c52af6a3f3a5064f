"""localmim.Runner in-process: weights-only resumable checkpoints, scopes of build_runner."""
import os.path as osp
import sys
import uuid

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import HistoryBuffer
from mmengine.registry import DefaultScope

from localmim.checkpoint import CheckpointError, load_checkpoint_file
from localmim.engine import Runner
from localmim.engine.launch import build_runner

TESTS_DIR = osp.dirname(osp.abspath(__file__))
TOY_CONFIG = osp.join(TESTS_DIR, 'configs', 'toy_regression.py')
if TESTS_DIR not in sys.path:  # the toy config imports tests/engine_toys.py
    sys.path.insert(0, TESTS_DIR)


def toy_runner(work_dir, max_iters, **overrides):
    cfg = Config.fromfile(TOY_CONFIG)
    cfg.work_dir = str(work_dir)
    cfg.train_cfg.max_iters = max_iters
    cfg.custom_hooks = []
    cfg.experiment_name = f'toy_{uuid.uuid4().hex}'  # fresh logger / message hub instances
    cfg.merge_from_dict(overrides)
    return build_runner(cfg)


def test_checkpoint_saves_loads_weights_only_and_resumes(tmp_path):
    runner = toy_runner(tmp_path, max_iters=2)
    runner.train()
    path = str(tmp_path / 'iter_2.pth')
    assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == []
    saved = torch.load(path, weights_only=True)
    assert saved['meta']['iter'] == 2
    saved_losses = saved['message_hub']['log_scalars']['train/loss']['log_history']
    assert saved_losses.tolist() == runner.message_hub.log_scalars['train/loss'].data[0].tolist()
    assert open(tmp_path / 'last_checkpoint').read() == path
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == '.pth') == ['iter_2.pth']

    resumed = toy_runner(tmp_path, max_iters=4, resume=True)
    resumed.resume(path)
    assert resumed.iter == 2
    buffer = resumed.message_hub.log_scalars['train/loss']
    assert isinstance(buffer, HistoryBuffer)
    assert buffer.data[0].tolist() == saved_losses.tolist()
    state = resumed.optim_wrapper.state_dict()['state']
    for index, param_state in saved['optimizer']['state'].items():
        assert torch.equal(state[index]['momentum_buffer'], param_state['momentum_buffer'])
    model_state = resumed.model.state_dict()
    for key, value in saved['state_dict'].items():
        assert torch.equal(model_state[key], value)
    resumed.train()
    assert resumed.iter == 4
    assert len(resumed.message_hub.log_scalars['train/loss'].data[0]) == 4
    assert open(tmp_path / 'last_checkpoint').read() == str(tmp_path / 'iter_4.pth')


def test_stock_mmengine_checkpoint_is_refused_with_a_clear_error(tmp_path):
    # Motivation for localmim.Runner: mmengine's own Runner pickles HistoryBuffer (and, through
    # its __getstate__, builtins.getattr), which weights-only loading refuses.
    runner = toy_runner(tmp_path, max_iters=2, runner_type='mmengine.Runner')
    assert type(runner) is not Runner
    runner.train()
    path = str(tmp_path / 'iter_2.pth')
    assert 'builtins.getattr' in torch.serialization.get_unsafe_globals_in_checkpoint(path)
    with pytest.raises(CheckpointError, match='disallowed global mmengine.logging.history_buffer'):
        load_checkpoint_file(path)


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg', 'localmim', None])
def test_build_runner_defaults_to_localmim_runner_in_every_scope(tmp_path, scope):
    runner = toy_runner(tmp_path, max_iters=1, default_scope=scope)
    assert type(runner) is Runner
    assert type(runner.model).__name__ == 'ToyRegressor'
    assert runner.cfg.default_scope == scope
    if scope is not None:
        assert DefaultScope.get_current_instance().scope_name == scope
