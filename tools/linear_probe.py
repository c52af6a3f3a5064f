#!/usr/bin/env python
"""Linear probe on frozen features: extract the backbone's features once, fit a softmax layer.

    python tools/linear_probe.py CONFIG BACKBONE.pth [--work-dir DIR] [--seed 0] [--cfg-options k=v ...]
    python tools/linear_probe.py CONFIG random        # the same encoder at random initialisation
    python tools/linear_probe.py CONFIG random:1      # ... drawn with seed 1
    python tools/linear_probe.py CONFIG random a.pth b.pth --names random A B   # several, one process
    python tools/linear_probe.py CONFIG a.pth --save-classifier   # + the start of an LP-FT fine-tune

Features are extracted on the GPU when there is one (``--device`` to choose), the softmax layer is
fitted on the host; a random initialisation is drawn on the host, so it is the same on every device.

CONFIG holds ``model`` (its ``backbone`` is probed; BACKBONE.pth is loaded through
``init_cfg=dict(type='Pretrained', prefix='backbone.')`` as in the fine-tuning configs),
``probe_train_dataloader`` and ``probe_test_dataloader`` (no augmentation: features are computed
once) and ``probe``:

- ``grids``: each output map [B, D, h, w] of the backbone is averaged over g x g cells for every
  g in ``grids`` (1 = the whole image), all concatenated -> one vector per image;
- ``token_norm``: LayerNorm (no affine) of every token before pooling;
- ``l2_grid``, ``holdout``: the L2 weights tried, each fitted on the training features minus a
  held-out fraction and scored on it; the best is refitted on all training features;
- ``max_iter``: L-BFGS iterations of each full-batch fit (standardised features, multinomial
  logistic regression).

``--save-classifier`` also writes, per checkpoint, ``DIR/<name>_classifier.pth``: the probed
backbone's weights (``backbone.*``, the drawn ones for ``random``) and the fitted layer, with the
standardisation folded in, as ``head.*`` of an ``ImageClassifier(features='taps')`` over the same
``out_indices``, which then predicts exactly what the probe does. A fine-tune started from it
(``--cfg-options load_from=DIR/<name>_classifier.pth``) is linear-probing-then-fine-tuning (LP-FT:
the head starts trained, so its first gradients do not scramble the features). It needs
``grids=(1,)`` and ``token_norm=True``: the features that classifier computes.

Prints and writes ``DIR/linear_probe.json`` ({name: result} for every checkpoint): top-1 (%) on
the test split, the chosen L2, the held-out accuracy of every L2, the feature size and the time
spent extracting and fitting.
"""
import argparse
import json
import os
import os.path as osp
import re
import sys
import time

import torch
import torch.nn.functional as F
from mmengine.config import DictAction

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
import localmim  # noqa: E402,F401  (harmless warnings silenced, weights-only loaders)
import localmim.registry  # noqa: E402,F401
from localmim.checkpoint import atomic_save  # noqa: E402
from localmim.engine.launch import load_config, run_tool  # noqa: E402
from localmim.models.classifier import pool_features  # noqa: E402
from localmim.registry import build_model  # noqa: E402

PROBE_DEFAULTS = dict(grids=(1,), token_norm=True, l2_grid=(1e-3,), max_iter=100, holdout=0.1)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='linear-probe config (model, probe_*_dataloader, probe)')
    parser.add_argument('checkpoints', nargs='+',
                        help="backbone checkpoints (tools/convert_checkpoint.py output), or 'random'")
    parser.add_argument('--names', nargs='+', help='a name per checkpoint in the output (default: the paths)')
    parser.add_argument('--work-dir', help='where linear_probe.json goes (default ./work_dirs/<config name>)')
    parser.add_argument('--seed', type=int, default=0, help='seed of the random initialisation and hold-out split')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu',
                        help='where features are extracted (default: cuda when available)')
    parser.add_argument('--progress', action='store_true',
                        help='print a line "extract NAME SPLIT [i/n]" per extracted batch (read by tools/demo.py)')
    parser.add_argument('--save-classifier', action='store_true',
                        help='also write DIR/<name>_classifier.pth: backbone + fitted layer, the start of a '
                        "fine-tune of ImageClassifier(features='taps') (LP-FT)")
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config entries')
    return parser.parse_args(argv)


@torch.no_grad()
def extract(model, loader, grids, token_norm, progress=False, name=''):
    """Features [N, F] float32 and labels [N] int64 (on the host) of every image the loader yields,
    computed on the model's device."""
    feats, labels = [], []
    for i, batch in enumerate(loader):
        data = model.data_preprocessor(batch, False)
        maps = model.backbone(data['inputs'])
        feats.append(pool_features(maps, grids, token_norm).float())
        labels.append(torch.as_tensor([int(s.gt_label) for s in data['data_samples']]))
        if progress:
            print(f'extract {name} [{i + 1}/{len(loader)}]', flush=True)
    return torch.cat(feats).cpu(), torch.cat(labels)  # one copy to the host, no wait per batch


def fit_softmax(x, y, num_classes, l2, max_iter):
    """Multinomial logistic regression on x [N, F], y [N] by full-batch L-BFGS;
    loss = mean cross-entropy + l2 * ||W||^2 / 2. Returns (W [F, C], b [C])."""
    w = torch.zeros(x.shape[1], num_classes, requires_grad=True)
    b = torch.zeros(num_classes, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=max_iter, history_size=20, line_search_fn='strong_wolfe',
                            tolerance_grad=1e-6, tolerance_change=1e-9)

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(x @ w + b, y) + 0.5 * l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


def accuracy(x, y, w, b):
    """Top-1 (%) of the linear classifier (w, b) on x [N, F], y [N]."""
    return 100.0 * ((x @ w + b).argmax(1) == y).float().mean().item()


def probe(train_x, train_y, test_x, test_y, num_classes, l2_grid, max_iter, holdout, seed=0):
    """Standardise with the training statistics, pick the L2 weight on a held-out part of the
    training set, refit on all of it. Returns a dict of results (top-1 in %) and the fitted layer
    on the unstandardised features, ``{'weight': [C, F], 'bias': [C]}`` (an ``nn.Linear``'s state)."""
    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    order = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(seed))
    n_hold = int(round(holdout * len(train_x)))
    hold, fit = order[:n_hold], order[n_hold:]
    scores = {}
    for l2 in l2_grid:
        if n_hold == 0 or len(l2_grid) == 1:
            scores[l2] = float('nan')
            continue
        w, b = fit_softmax(train_x[fit], train_y[fit], num_classes, l2, max_iter)
        scores[l2] = accuracy(train_x[hold], train_y[hold], w, b)
    best = max(l2_grid, key=lambda l2: (scores[l2] if scores[l2] == scores[l2] else -1, -l2))
    w, b = fit_softmax(train_x, train_y, num_classes, best, max_iter)
    result = {'top1': accuracy(test_x, test_y, w, b), 'train_top1': accuracy(train_x, train_y, w, b), 'l2': best,
              'holdout_top1': {str(k): v for k, v in scores.items()}}
    # the same layer on the raw features: (x - mean) / std @ w + b = x @ (w / std) + (b - mean / std @ w)
    head = {'weight': (w / std[:, None]).T.contiguous(), 'bias': b - (mean / std) @ w}
    return result, head


def save_classifier(model, head, result, work_dir, name):
    """Write ``work_dir/<name>_classifier.pth``: ``model``'s backbone weights and ``head`` as the
    state of an ``ImageClassifier(features='taps')`` (see the module doc); returns its path."""
    state = {f'backbone.{k}': v.cpu() for k, v in model.backbone.state_dict().items()}  # features on a GPU
    state.update({f'head.{k}': v for k, v in head.items()})
    meta = dict(features='taps', out_indices=list(model.backbone.out_indices), feature_dim=head['weight'].shape[1],
                probe_top1=result['top1'], probed=name)
    path = osp.join(work_dir, re.sub(r'[^\w.-]+', '-', name).strip('-') + '_classifier.pth')
    os.makedirs(work_dir, exist_ok=True)
    atomic_save({'state_dict': state, 'meta': meta}, path)
    return path


def build_loaders(cfg, seed):
    """{'train': loader, 'test': loader} of the config's ``probe_*_dataloader``."""
    from mmengine.registry import DefaultScope
    from mmengine.runner import Runner
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope', 'localmim')):
        return {split: Runner.build_dataloader(cfg[f'probe_{split}_dataloader'], seed=seed)
                for split in ('train', 'test')}


def build_backbone_model(cfg, checkpoint, seed):
    """The config's model with the backbone's init_cfg pointing at ``checkpoint``, initialised and in
    eval mode; ``'random'`` keeps the random initialisation drawn with ``seed``, ``'random:S'`` with S."""
    if checkpoint.startswith('random:'):
        try:
            seed = int(checkpoint.split(':', 1)[1])
        except ValueError:
            raise ValueError(f"checkpoint {checkpoint!r}: write 'random' or 'random:SEED' with an integer SEED")
    torch.manual_seed(seed)
    model_cfg = cfg.model.copy()
    if not checkpoint.startswith('random'):
        if not osp.isfile(checkpoint):
            raise FileNotFoundError(f'backbone checkpoint {checkpoint} does not exist')
        model_cfg.backbone = dict(model_cfg.backbone, init_cfg=dict(type='Pretrained', checkpoint=checkpoint,
                                                                      prefix='backbone.'))
    model = build_model(model_cfg)
    model.init_weights()
    return model.eval()


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options, work_dir=args.work_dir)
    for key in ('model', 'probe_train_dataloader', 'probe_test_dataloader'):
        if key not in cfg:
            raise KeyError(f'config {args.config} has no "{key}" entry (see tools/linear_probe.py)')
    unknown = set(cfg.get('probe', {})) - set(PROBE_DEFAULTS)
    if unknown:
        raise KeyError(f'config {args.config}: unknown probe keys {sorted(unknown)}; known: {sorted(PROBE_DEFAULTS)}')
    opts = dict(PROBE_DEFAULTS, **cfg.get('probe', {}))
    names = args.names or args.checkpoints
    if len(names) != len(args.checkpoints):
        raise ValueError(f'--names gives {len(names)} names for {len(args.checkpoints)} checkpoints')
    device = torch.device(args.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise ValueError(f'--device {args.device}: no CUDA GPU is available here (use --device cpu)')
    if args.save_classifier and (tuple(opts['grids']) != (1,) or not opts['token_norm']):
        raise ValueError(f"--save-classifier: config {args.config} probes with probe.grids={tuple(opts['grids'])}, "
                         f"token_norm={opts['token_norm']}; ImageClassifier(features='taps') computes the features "
                         'of grids=(1,), token_norm=True only')
    loaders = build_loaders(cfg, args.seed)
    results = {}
    for name, checkpoint in zip(names, args.checkpoints):
        start = time.time()
        model = build_backbone_model(cfg, checkpoint, args.seed).to(device)
        data = {split: extract(model, loader, opts['grids'], opts['token_norm'], args.progress, f'{name} {split}')
                for split, loader in loaders.items()}
        extract_s = time.time() - start
        num_classes = int(max(data['train'][1].max(), data['test'][1].max())) + 1
        result, head = probe(*data['train'], *data['test'], num_classes, opts['l2_grid'], opts['max_iter'],
                             opts['holdout'], args.seed)
        result.update(checkpoint=checkpoint, config=args.config, device=str(device),
                      feature_dim=int(data['train'][0].shape[1]),
                      num_train=len(data['train'][1]), num_test=len(data['test'][1]),
                      extract_seconds=round(extract_s, 1), fit_seconds=round(time.time() - start - extract_s, 1))
        if args.save_classifier:
            result['classifier'] = save_classifier(model, head, result, cfg.work_dir, name)
        results[name] = result
        print(f"linear probe {name}: top-1 {result['top1']:.2f}% on {result['num_test']} test images "
              f"({result['feature_dim']} features, L2 {result['l2']:g}; extract {result['extract_seconds']} s, "
              f"fit {result['fit_seconds']} s)", flush=True)
    os.makedirs(cfg.work_dir, exist_ok=True)
    out = osp.join(cfg.work_dir, 'linear_probe.json')
    with open(out, 'w') as f:
        json.dump(results, f, indent=1)
    print(f'saved {out}', flush=True)
    return results


if __name__ == '__main__':
    run_tool(main)
