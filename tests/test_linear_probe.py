"""tools/linear_probe.py: pooling, the L-BFGS softmax fit (checked by its optimality condition computed
by hand) and the tool end to end on a tiny generated Fashion-MNIST."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from _data_helpers import write_tiny_fashion_mnist

ROOT = Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / 'mm_configs' / 'imagenet' / 'vit-tiny_linprobe-features_fmnist.py')


def load_tool():
    spec = importlib.util.spec_from_file_location('linear_probe_tool', ROOT / 'tools' / 'linear_probe.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pool_features_averages_whole_map_and_quadrants():
    tool = load_tool()
    fmap = torch.randn(2, 3, 4, 4)
    got = tool.pool_features([fmap], grids=(1, 2), token_norm=False).numpy()
    x = fmap.numpy()
    quads = [x[:, :, i:i + 2, j:j + 2].mean(axis=(2, 3)) for i in (0, 2) for j in (0, 2)]  # [B, D] each
    expected = np.concatenate([x.mean(axis=(2, 3)), np.stack(quads, axis=2).reshape(2, -1)], axis=1)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    normed = tool.pool_features([fmap], grids=(1,), token_norm=True).numpy()
    tokens = x.transpose(0, 2, 3, 1)
    tokens = (tokens - tokens.mean(-1, keepdims=True)) / np.sqrt(tokens.var(-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(normed, tokens.mean(axis=(1, 2)), rtol=1e-4, atol=1e-5)


def test_fit_softmax_reaches_the_optimum():
    tool = load_tool()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(300, 5, generator=gen)
    y = (x[:, :3] + 0.8 * torch.randn(300, 3, generator=gen)).argmax(1)  # noisy: a finite optimum
    l2 = 1e-2
    w, b = tool.fit_softmax(x, y, 3, l2, max_iter=200)
    # gradient of mean cross-entropy + l2 |W|^2 / 2, by hand: X^T (p - onehot) / N + l2 W, mean(p - onehot)
    logits = x.double().numpy() @ w.double().numpy() + b.double().numpy()
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    residual = p - np.eye(3)[y.numpy()]
    grad_w = x.double().numpy().T @ residual / len(x) + l2 * w.double().numpy()
    assert np.abs(grad_w).max() < 1e-4 and np.abs(residual.mean(0)).max() < 1e-4
    assert 60 < tool.accuracy(x, y, w, b) < 100


def tiny_probe_options(tmp_path):
    root = tmp_path / 'fmnist'
    write_tiny_fashion_mnist(str(root), num_train=64, num_test=32)
    options = [f'probe_{s}_dataloader.dataset.{k}={v}' for s in ('train', 'test')
               for k, v in (('data_root', root), ('num_samples', 'None'))]
    options += [f'probe_{s}_dataloader.num_workers=0' for s in ('train', 'test')]
    options += [f'probe_{s}_dataloader.persistent_workers=False' for s in ('train', 'test')]
    return options


def test_linear_probe_tool_on_tiny_data(tmp_path):
    tool = load_tool()
    options = tiny_probe_options(tmp_path)
    results = tool.main([CONFIG, 'random', 'random:1', '--names', 'a', 'b', '--work-dir', str(tmp_path / 'out'),
                         '--cfg-options', *options, 'probe.l2_grid=(1e-3,1e-1)', 'probe.max_iter=20'])
    saved = json.loads((tmp_path / 'out' / 'linear_probe.json').read_text())
    assert set(saved) == {'a', 'b'} and saved['a']['top1'] == pytest.approx(results['a']['top1'])
    expected_device = 'cuda' if torch.cuda.is_available() else 'cpu'  # the GPU by default when there is one
    assert saved['a']['device'] == expected_device
    assert saved['a']['num_train'] == 64 and saved['a']['num_test'] == 32 and saved['a']['feature_dim'] == 4 * 96
    assert set(saved['a']['holdout_top1']) == {'0.001', '0.1'} and saved['a']['l2'] in (0.001, 0.1)
    assert all(0 <= r['top1'] <= 100 for r in saved.values())
    with pytest.raises(ValueError, match='random:SEED'):
        tool.main([CONFIG, 'random:x', '--work-dir', str(tmp_path / 'out'), '--cfg-options', *options])


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the refusal on a machine without a GPU')
def test_linear_probe_tool_refuses_cuda_without_a_gpu(tmp_path):
    with pytest.raises(ValueError, match='--device cuda: no CUDA GPU'):
        load_tool().main([CONFIG, 'random', '--device', 'cuda', '--work-dir', str(tmp_path / 'out'),
                          '--cfg-options', *tiny_probe_options(tmp_path)])


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
def test_linear_probe_features_on_the_gpu_equal_the_hosts(tmp_path):
    """The same random encoder (drawn on the host) gives the same features on the GPU as on the CPU."""
    tool = load_tool()
    args = tool.parse_args([CONFIG, 'random', '--cfg-options', *tiny_probe_options(tmp_path)])
    cfg = tool.load_config(args.config, args.cfg_options, work_dir=str(tmp_path / 'out'))
    loader = tool.build_loaders(cfg, seed=0)['test']
    feats = {}
    for device in ('cpu', 'cuda'):
        model = tool.build_backbone_model(cfg, 'random', seed=0).to(device)
        feats[device], labels = tool.extract(model, loader, grids=(1,), token_norm=True)
        assert feats[device].device.type == 'cpu' and labels.shape == (32,)
    torch.testing.assert_close(feats['cuda'], feats['cpu'], atol=1e-3, rtol=1e-3)
