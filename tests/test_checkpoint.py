"""Weights-only loading, clear errors and atomic writes of localmim.checkpoint."""
import functools
import http.server
import os
import threading
from collections import OrderedDict, defaultdict, namedtuple

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner import load_checkpoint
from mmengine.runner.checkpoint import CheckpointLoader
from safetensors.torch import save_file

from localmim.checkpoint import (CheckpointError, atomic_save, find_latest_checkpoint,
                                 history_buffer_from_dict, load_checkpoint_file,
                                 to_weights_only_safe)


class RunsCodeWhenUnpickled:
    """Unpickling calls os.system, which would create ``sentinel``."""

    def __init__(self, sentinel):
        self.sentinel = sentinel

    def __reduce__(self):
        return os.system, (f'touch {self.sentinel}',)


@pytest.fixture
def malicious_file(tmp_path):
    sentinel = tmp_path / 'code_ran'
    path = tmp_path / 'malicious.pth'
    torch.save({'state_dict': {'w': torch.ones(2)}, 'payload': RunsCodeWhenUnpickled(sentinel)},
               path)
    return path, sentinel


def test_malicious_pickle_is_refused_without_running_code(malicious_file):
    path, sentinel = malicious_file
    with pytest.raises(CheckpointError) as info:
        load_checkpoint_file(path)
    message = str(info.value)
    assert str(path) in message
    assert 'weights-only' in message and 'execute arbitrary code' in message
    assert 'disallowed global posix.system' in message
    assert not sentinel.exists()


def test_mmengine_loaders_go_through_the_weights_only_loader(malicious_file):
    # mmengine's load_checkpoint (used by load_from and init_cfg=Pretrained) uses our scheme.
    path, sentinel = malicious_file
    with pytest.raises(CheckpointError, match='Refused to load checkpoint file'):
        load_checkpoint(torch.nn.Linear(2, 1), str(path))
    assert not sentinel.exists()


def test_missing_truncated_and_garbage_files_give_one_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=f'Checkpoint file not found: {tmp_path}/none.pth'):
        load_checkpoint_file(tmp_path / 'none.pth')
    good = tmp_path / 'good.pth'
    torch.save({'w': torch.arange(1000.)}, good)
    data = good.read_bytes()
    for name, content in [('truncated.pth', data[:len(data) // 2]), ('empty.pth', b''),
                          ('zip_garbage.pth', b'PK\x03\x04' + b'\x00' * 40)]:
        (tmp_path / name).write_bytes(content)
        with pytest.raises(CheckpointError, match=f'{tmp_path}/{name} is truncated or corrupt'):
            load_checkpoint_file(tmp_path / name)
    (tmp_path / 'text.pth').write_text('not a checkpoint at all')  # parsed as pickle opcodes
    with pytest.raises(CheckpointError, match=f'{tmp_path}/text.pth: the weights-only '
                       'unpickler cannot read it .* it is corrupt'):
        load_checkpoint_file(tmp_path / 'text.pth')
    assert torch.equal(load_checkpoint_file(good)['w'], torch.arange(1000.))


def test_safetensors_load_and_corrupt_safetensors(tmp_path):
    path = tmp_path / 'weights.safetensors'
    save_file({'a': torch.arange(6.).reshape(2, 3)}, path)
    assert torch.equal(load_checkpoint_file(path)['a'], torch.arange(6.).reshape(2, 3))
    (tmp_path / 'bad.safetensors').write_bytes(b'\x08\x00\x00\x00\x00\x00\x00\x00{"a":1}')
    with pytest.raises(CheckpointError, match='bad.safetensors is not a valid safetensors'):
        load_checkpoint_file(tmp_path / 'bad.safetensors')


def test_scoped_safe_globals_apply_to_one_load_only(tmp_path):
    import argparse
    path = tmp_path / 'release.pth'
    torch.save({'model': {'w': torch.ones(1)}, 'args': argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(CheckpointError, match='argparse.Namespace'):
        load_checkpoint_file(path)
    assert load_checkpoint_file(path, safe_globals=[argparse.Namespace])['args'].lr == 0.1
    with pytest.raises(CheckpointError, match='argparse.Namespace'):
        load_checkpoint_file(path)


def test_http_scheme_downloads_then_loads_weights_only(tmp_path, monkeypatch, malicious_file):
    served = tmp_path / 'served'
    served.mkdir()
    torch.save({'state_dict': {'w': torch.full((3,), 7.0)}}, served / 'good.pth')
    os.replace(malicious_file[0], served / 'malicious.pth')
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f'http://127.0.0.1:{server.server_address[1]}'
    try:
        loaded = CheckpointLoader.load_checkpoint(f'{url}/good.pth')
        assert torch.equal(loaded['state_dict']['w'], torch.full((3,), 7.0))
        assert (tmp_path / 'torch_home/hub/checkpoints/good.pth').is_file()
        with pytest.raises(CheckpointError,
                           match='malicious.pth: it references the disallowed global posix.system'):
            CheckpointLoader.load_checkpoint(f'{url}/malicious.pth')
        assert not malicious_file[1].exists()
    finally:
        server.shutdown()


def test_interrupted_atomic_save_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / 'ckpt.pth'
    atomic_save({'w': torch.zeros(100)}, path)
    real_save = torch.save

    def save_half_then_fail(obj, file):
        real_save(obj, file)
        file.truncate(file.tell() // 2)
        raise OSError('disk full')

    monkeypatch.setattr(torch, 'save', save_half_then_fail)
    with pytest.raises(OSError, match='disk full'):
        atomic_save({'w': torch.ones(100)}, path)
    monkeypatch.undo()
    assert torch.equal(load_checkpoint_file(path)['w'], torch.zeros(100))
    assert os.listdir(tmp_path) == ['ckpt.pth']  # the partial file was removed
    atomic_save({'w': torch.ones(100)}, path)
    assert torch.equal(load_checkpoint_file(path)['w'], torch.ones(100))


def test_to_weights_only_safe_converts_numpy_and_history_buffers(tmp_path):
    buffer = HistoryBuffer()
    for value in (0.5, 0.25, 2.0):
        buffer.update(value)
    Point = namedtuple('Point', 'x y')
    content = OrderedDict(
        score=np.float64(0.75), count=np.int64(3), flag=np.bool_(True),
        array=np.arange(4, dtype=np.float32), names=np.array(['a', 'b']),
        buffer=buffer, point=Point(1, 2), table=defaultdict(list, k=[np.float32(1.5)]))
    safe = to_weights_only_safe(content)
    path = tmp_path / 'safe.pth'
    torch.save(safe, path)
    assert torch.serialization.get_unsafe_globals_in_checkpoint(str(path)) == []
    loaded = load_checkpoint_file(path)
    assert isinstance(loaded, OrderedDict)
    assert loaded['score'] == 0.75 and type(loaded['score']) is float
    assert loaded['count'] == 3 and type(loaded['count']) is int
    assert loaded['flag'] is True
    assert torch.equal(loaded['array'], torch.arange(4, dtype=torch.float32))
    assert loaded['names'] == ['a', 'b'] and loaded['point'] == (1, 2)
    assert loaded['table'] == {'k': [1.5]} and type(loaded['table']) is dict
    restored = history_buffer_from_dict(loaded['buffer'])
    assert restored.data[0].tolist() == [0.5, 0.25, 2.0]
    assert restored.mean() == pytest.approx(2.75 / 3) and restored.current() == 2.0
    with pytest.raises(TypeError,
                       match=r"checkpoint\['hook'\]\[0\]: a builtins.builtin_function_or_method"):
        to_weights_only_safe({'hook': [print]})


def test_find_latest_checkpoint_falls_back_when_the_pointer_is_broken(tmp_path):
    assert find_latest_checkpoint(tmp_path) is None
    for name in ('iter_2.pth', 'iter_10.pth', '.iter_12.pth.partial'):
        (tmp_path / name).write_bytes(b'x')
    pointer = tmp_path / 'last_checkpoint'
    pointer.write_text(str(tmp_path / 'iter_2.pth'))
    assert find_latest_checkpoint(tmp_path) == str(tmp_path / 'iter_2.pth')
    pointer.write_text('')  # killed while the pointer was being rewritten
    assert find_latest_checkpoint(tmp_path) == str(tmp_path / 'iter_10.pth')
