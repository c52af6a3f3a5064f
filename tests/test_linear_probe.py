"""tools/linear_probe.py: pooling, the L-BFGS softmax fit (checked by its optimality condition computed
by hand) and the tool end to end on a tiny generated Fashion-MNIST."""
import importlib.util
import json
import re
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


def test_probe_head_folds_the_standardisation_into_the_layer():
    """probe()'s head on raw features gives the logits of the layer fitted on standardised ones."""
    tool = load_tool()
    gen = torch.Generator().manual_seed(0)
    scale, shift = torch.rand(6, generator=gen) * 5 + 0.1, torch.randn(6, generator=gen) * 3
    x = torch.randn(200, 6, generator=gen) * scale + shift
    y = (x[:, :3] / scale[:3] + 0.5 * torch.randn(200, 3, generator=gen)).argmax(1)
    result, head = tool.probe(x[:150], y[:150], x[150:], y[150:], 3, l2_grid=(1e-2,), max_iter=50, holdout=0.1)
    mean, std = x[:150].mean(0), x[:150].std(0)
    w, b = tool.fit_softmax((x[:150] - mean) / std, y[:150], 3, 1e-2, 50)  # the same deterministic fit
    torch.testing.assert_close(x[150:] @ head['weight'].T + head['bias'], (x[150:] - mean) / std @ w + b,
                               atol=1e-4, rtol=1e-4)
    assert result['top1'] == pytest.approx(tool.accuracy(x[150:], y[150:], head['weight'].T, head['bias']))


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


def test_saved_classifier_predicts_what_the_probe_predicts_and_starts_the_finetune(tmp_path):
    """--save-classifier: the fine-tune config's ImageClassifier(features='taps') loaded from the file
    (as tools/train.py's load_from does) scores the probe's own top-1 on the same test images, and
    holds the probed backbone (the drawn one for 'random'); LP-FT then trains from it."""
    from mmengine.config import Config
    from localmim.engine.launch import build_runner
    tool = load_tool()
    options = tiny_probe_options(tmp_path)
    out = tmp_path / 'out'
    results = tool.main([CONFIG, 'random', '--names', 'random init', '--work-dir', str(out), '--save-classifier',
                         '--cfg-options', *options])
    path = results['random init']['classifier']
    assert path == str(out / 'random-init_classifier.pth')
    assert json.loads((out / 'linear_probe.json').read_text())['random init']['classifier'] == path
    saved = torch.load(path, weights_only=True)
    assert saved['meta']['features'] == 'taps' and saved['meta']['out_indices'] == [1, 3, 5, 7]
    cfg = tool.load_config(CONFIG, tool.parse_args([CONFIG, 'random', '--cfg-options', *options]).cfg_options,
                           work_dir=str(out))
    drawn = tool.build_backbone_model(cfg, 'random', seed=0).backbone.state_dict()
    assert all(torch.equal(saved['state_dict'][f'backbone.{k}'], v) for k, v in drawn.items())

    ft = Config.fromfile(str(ROOT / 'mm_configs' / 'imagenet' / 'vit-tiny_ft-short_fmnist.py'))
    ft.merge_from_dict({'work_dir': str(tmp_path / 'ft'), 'load_from': path, 'train_cfg.max_iters': 2,
                        'train_cfg.val_interval': 2, 'default_hooks.logger.interval': 1,
                        'train_dataloader.dataset.data_root': str(tmp_path / 'fmnist'),
                        'train_dataloader.num_workers': 0, 'train_dataloader.persistent_workers': False,
                        'val_dataloader': cfg.probe_test_dataloader, 'test_dataloader': cfg.probe_test_dataloader})
    ft.param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False)]
    runner = build_runner(ft)
    runner.load_or_resume()  # what train() does first: load_from into the fine-tune's classifier
    state = runner.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in saved['state_dict'].items())
    assert runner.test()['accuracy/top1'] == pytest.approx(results['random init']['top1'])
    runner.train()  # LP-FT: two iterations from the probe's layer
    assert runner.iter == 2 and not torch.equal(runner.model.head.weight, saved['state_dict']['head.weight'])


def test_save_classifier_refuses_features_no_classifier_computes(tmp_path):
    with pytest.raises(ValueError, match=r'--save-classifier: .*probe.grids=\(1, 2\)'):
        load_tool().main([CONFIG, 'random', '--work-dir', str(tmp_path / 'out'), '--save-classifier',
                          '--cfg-options', *tiny_probe_options(tmp_path), 'probe.grids=(1,2)'])


@pytest.mark.parametrize('change, named', [
    ({'model.backbone.out_indices': (0, 2, 4, 6)}, r'out_indices \[0, 2, 4, 6\]'),
    ({'model.features': 'last', 'model.fc_norm': True}, "features='last'")])
def test_a_classifier_file_of_other_taps_is_refused_not_loaded(tmp_path, change, named):
    """load_from a probe classifier into a fine-tune whose features differ: taps at other indices
    (every shape matches, so it would load silently) or the last block (the head would be dropped)
    -> one error naming the file, both out_indices and the setting to change; nothing is loaded."""
    from mmengine.config import Config
    from localmim.engine.launch import build_runner
    options = tiny_probe_options(tmp_path)
    results = load_tool().main([CONFIG, 'random', '--work-dir', str(tmp_path / 'out'), '--save-classifier',
                                '--cfg-options', *options])
    path = results['random']['classifier']
    ft = Config.fromfile(str(ROOT / 'mm_configs' / 'imagenet' / 'vit-tiny_ft-short_fmnist.py'))
    ft.merge_from_dict({'work_dir': str(tmp_path / 'ft'), 'load_from': path,
                        'train_dataloader.dataset.data_root': str(tmp_path / 'fmnist'), **change})
    runner = build_runner(ft)
    before = {k: v.clone() for k, v in runner.model.state_dict().items()}
    with pytest.raises(ValueError, match=rf"checkpoint {re.escape(path)} is a classifier of features='taps' at "
                                         rf"backbone out_indices \[1, 3, 5, 7\].*{named}.*"
                                         r"model.backbone.out_indices=\(1, 3, 5, 7\)"):
        runner.load_or_resume()
    assert all(torch.equal(runner.model.state_dict()[k], v) for k, v in before.items())
