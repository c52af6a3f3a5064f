"""localmim.Runner in-process: weights-only resumable checkpoints, scopes of build_runner."""
import os
import os.path as osp
import sys
import uuid

import numpy as np
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


def test_stock_mmengine_checkpoint_resumes_and_tests_after_import_localmim(tmp_path):
    # mmengine's own Runner (mmdet's and mmseg's train scripts) pickles HistoryBuffer, numpy
    # arrays/dtypes/scalars and, through HistoryBuffer.__getstate__, builtins.getattr.
    runner = toy_runner(tmp_path, max_iters=2, runner_type='mmengine.Runner')
    assert type(runner) is not Runner
    runner.train()
    path = str(tmp_path / 'iter_2.pth')
    unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    assert {'builtins.getattr', 'mmengine.logging.history_buffer.HistoryBuffer'} <= set(unsafe)
    methods = dict(HistoryBuffer._statistics_methods)

    saved = load_checkpoint_file(path)
    buffer = saved['message_hub']['log_scalars']['train/loss']
    assert type(buffer) is HistoryBuffer and len(buffer.data[0]) == 2
    assert HistoryBuffer._statistics_methods == methods  # the process-wide table is untouched

    resumed = toy_runner(tmp_path, max_iters=4, runner_type='mmengine.Runner', resume=True,
                         load_from=path)
    resumed.train()
    assert resumed.iter == 4
    losses = resumed.message_hub.log_scalars['train/loss'].data[0]
    assert losses[:2].tolist() == buffer.data[0].tolist() and len(losses) == 4

    tester = toy_runner(tmp_path / 'test', max_iters=0, runner_type='mmengine.Runner',
                        load_from=str(tmp_path / 'iter_4.pth'))
    metrics = tester.test()
    model = tester.model
    dataset = tester.test_dataloader.dataset
    with torch.no_grad():
        expected = ((model.net(dataset.inputs) - dataset.targets) ** 2).mean().item()
    assert metrics['toy/mse'] == pytest.approx(expected, rel=1e-5)


class Payload:
    """Unpickles to ``function(*args)``."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


@pytest.mark.parametrize('payload', [
    Payload(os.system, 'true'),
    Payload(getattr, HistoryBuffer, '__init__'),  # getattr only for statistics methods
    Payload(getattr, np.ndarray, 'tofile'),
    Payload(getattr, HistoryBuffer, '_statistics_methods'),
], ids=['os.system', 'getattr-HistoryBuffer-init', 'getattr-ndarray', 'getattr-methods-table'])
def test_code_running_pickles_are_still_refused(tmp_path, payload):
    path = tmp_path / 'malicious.pth'
    torch.save({'state_dict': {}, 'payload': payload}, path)
    with pytest.raises(CheckpointError, match=f'Refused to load checkpoint file {path}'):
        load_checkpoint_file(path)


def test_history_buffer_mapping_a_statistic_to_another_method_is_refused(tmp_path, monkeypatch):
    buffer = HistoryBuffer()
    buffer.update(1.0)
    tampered = dict(buffer.__dict__, statistics_methods={'mean': HistoryBuffer.max})
    monkeypatch.setattr(HistoryBuffer, '__getstate__', lambda self: tampered)
    path = tmp_path / 'tampered.pth'
    torch.save({'message_hub': {'buffer': buffer}}, path)
    monkeypatch.undo()
    with pytest.raises(CheckpointError, match='other methods than the registered ones'):
        load_checkpoint_file(path)
    assert HistoryBuffer._statistics_methods['mean'] is HistoryBuffer.mean


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg', 'localmim', None])
def test_build_runner_defaults_to_localmim_runner_in_every_scope(tmp_path, scope):
    runner = toy_runner(tmp_path, max_iters=1, default_scope=scope)
    assert type(runner) is Runner
    assert type(runner.model).__name__ == 'ToyRegressor'
    assert runner.cfg.default_scope == scope
    if scope is not None:
        assert DefaultScope.get_current_instance().scope_name == scope
