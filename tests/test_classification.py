"""ImageNet-style classification: classifier losses (timm's mixup/cutmix and label smoothing),
linear probe, top-k accuracy, and short Fashion-MNIST runs of the configs through mmengine's Runner.

tools/train.py is not on this branch yet, so the runs use ``mmengine.runner.Runner.from_cfg``.
"""
import copy
import gzip
import os.path as osp

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.runner import Runner
from mmengine.structures import BaseDataElement

from localmim.evaluation import Accuracy
from localmim.models import ImageClassifier, VisionTransformer
from localmim.registry import DATASETS, TRANSFORMS

CONFIGS = osp.join(osp.dirname(__file__), '..', 'mm_configs', 'imagenet')
FMNIST = '/usr/share/datasets/fashion-mnist'
TINY = dict(type='VisionTransformer', arch=None, img_size=16, patch_size=4, embed_dim=16, depth=2, num_heads=2)


# ---- test-only stand-ins for the data helper's components, used only while they are absent ----
def _register_standins():
    from mmcv.transforms import BaseTransform
    from mmengine.dataset import BaseDataset
    DATASETS.import_from_location()
    TRANSFORMS.import_from_location()
    if DATASETS.get('FashionMNIST') is None:
        class FashionMNIST(BaseDataset):
            def __init__(self, data_root, split='train', num_samples=None, pipeline=(), test_mode=False):
                self.split, self.num_samples = split, num_samples
                super().__init__(data_root=data_root, pipeline=list(pipeline), test_mode=test_mode,
                                 serialize_data=False)

            def load_data_list(self):
                stem = 'train' if self.split == 'train' else 't10k'
                with gzip.open(osp.join(self.data_root, f'{stem}-images-idx3-ubyte.gz')) as f:
                    images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
                with gzip.open(osp.join(self.data_root, f'{stem}-labels-idx1-ubyte.gz')) as f:
                    labels = np.frombuffer(f.read(), np.uint8, offset=8)
                n = self.num_samples or len(labels)
                return [dict(img=np.repeat(images[i][:, :, None], 3, 2), gt_label=int(labels[i])) for i in range(n)]
        DATASETS.register_module(module=FashionMNIST)
    if TRANSFORMS.get('TimmTransform') is None:
        class TimmTransform(BaseTransform):
            def __init__(self, **kwargs):
                from timm.data import create_transform
                self.t = create_transform(**kwargs)

            def transform(self, results):
                from PIL import Image
                results['img'] = self.t(Image.fromarray(results['img']))
                return results
        TRANSFORMS.register_module(module=TimmTransform)
    if TRANSFORMS.get('PackInputs') is None:
        class PackInputs(BaseTransform):
            def transform(self, results):
                sample = BaseDataElement(gt_label=torch.tensor([results['gt_label']]))
                return dict(inputs=results['img'], data_samples=sample)
        TRANSFORMS.register_module(module=PackInputs)


def samples_of(labels):
    return [BaseDataElement(gt_label=torch.tensor([int(y)])) for y in labels]


def test_accuracy_hand_example():
    scores = [[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5], [0.6, 0.1, 0.3]]
    labels = [1, 1, 0, 0]  # top-1 hits: 1st and 4th; top-2 adds the 2nd
    metric = Accuracy(topk=(1, 2))
    metric.process(None, [dict(pred_score=torch.tensor(s), gt_label=torch.tensor([y])) for s, y in zip(scores, labels)])
    assert metric.evaluate(4) == {'accuracy/top1': 50.0, 'accuracy/top2': 75.0}
    metric = Accuracy(topk=(1, 5))
    metric.process(None, [dict(pred_score=torch.tensor(scores[0]), gt_label=torch.tensor([1]))])
    with pytest.raises(ValueError, match='exceeds the 3 classes'):
        metric.evaluate(1)


def test_label_smoothing_loss_and_predict():
    model = ImageClassifier(TINY, num_classes=4, label_smoothing=0.1, head_init_std=0.5).train()
    x, y = torch.randn(3, 3, 16, 16), torch.tensor([2, 0, 3])
    loss = model.loss(x, samples_of(y))['loss']
    logp = F.log_softmax(model(x), dim=1)
    expected = (0.9 * -logp[torch.arange(3), y] + 0.1 * -logp.mean(1)).mean()
    torch.testing.assert_close(loss, expected)
    preds = model.eval().predict(x, samples_of(y))
    logits = model(x)
    for p, row in zip(preds, logits):
        torch.testing.assert_close(p.pred_score, row.softmax(0))
        assert p.pred_label.item() == row.argmax().item() and p.gt_label.shape == (1,)


def test_mixup_loss_equals_hand_mixing():
    model = ImageClassifier(TINY, num_classes=4, label_smoothing=0.1, head_init_std=0.5,
                            mixup=dict(mixup_alpha=0.8, cutmix_alpha=0., prob=1.0)).train()
    x, y = torch.randn(4, 3, 16, 16), torch.tensor([1, 0, 3, 2])
    np.random.seed(0)
    loss = model.loss(x.clone(), samples_of(y))['loss']
    np.random.seed(0)
    np.random.rand()  # timm's Mixup: "apply?" draw, then lambda ~ Beta(alpha, alpha)
    lam = float(np.random.beta(0.8, 0.8))
    mixed = lam * x + (1 - lam) * x.flip(0)
    smooth = torch.full((4, 4), 0.1 / 4)
    one_hot = smooth.scatter(1, y[:, None], 1 - 0.1 + 0.1 / 4)
    target = lam * one_hot + (1 - lam) * one_hot.flip(0)
    expected = (-target * F.log_softmax(model(mixed), dim=1)).sum(1).mean()
    torch.testing.assert_close(loss, expected)
    with pytest.raises(ValueError, match='even batch size'):
        model.loss(x[:3], samples_of(y[:3]))


def test_linear_probe_freezes_backbone():
    model = ImageClassifier(dict(TINY, out_type='cls_token'), num_classes=4, fc_norm=False, linear_probe=True,
                            head_init_std=0.01, label_smoothing=0.).train()
    assert not model.backbone.training and model.probe_norm.training and not model.probe_norm.affine
    assert all(not p.requires_grad for p in model.backbone.parameters())
    x = torch.randn(4, 3, 16, 16)
    model.loss(x, samples_of([0, 1, 2, 3]))['loss'].backward()
    assert model.head.weight.grad is not None
    feats = model.backbone(x)[0]
    normed = (feats - feats.mean(0)) / (feats.var(0, unbiased=False) + 1e-6).sqrt()
    torch.testing.assert_close(model.head(normed), model(x), atol=1e-5, rtol=0)  # BN, batch statistics


def test_taps_features_are_the_token_normalised_average_of_every_output():
    """features='taps': each output map LayerNorm-ed per token (no affine) and averaged, concatenated;
    computed here by hand with numpy from the backbone's own maps."""
    model = ImageClassifier(dict(TINY, out_indices=(0, 1)), num_classes=3, features='taps', fc_norm=False).eval()
    assert model.head.in_features == 2 * 16  # two taps of 16 channels: out_channels()' default
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        maps = [m.numpy() for m in model.backbone(x)]
        got = model.extract_feat(x).numpy()
        logits = model(x)
    expected = []
    for fmap in maps:
        tokens = fmap.transpose(0, 2, 3, 1)  # [B, h, w, D]
        tokens = (tokens - tokens.mean(-1, keepdims=True)) / np.sqrt(tokens.var(-1, keepdims=True) + 1e-5)
        expected.append(tokens.mean(axis=(1, 2)))
    np.testing.assert_allclose(got, np.concatenate(expected, axis=1), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(logits, model.head(torch.from_numpy(got)))
    with pytest.raises(ValueError, match="features='all'"):
        ImageClassifier(TINY, num_classes=3, features='all')


def test_taps_in_channels_of_a_swin_are_its_stages_widths():
    swin = dict(type='SwinTransformer', arch=None, img_size=32, patch_size=4, window_size=4, embed_dim=8,
                depths=(1, 1, 1), num_heads=(1, 1, 1), out_indices=(0, 2))
    model = ImageClassifier(swin, num_classes=3, features='taps', fc_norm=False).eval()
    with torch.no_grad():
        feats = model.extract_feat(torch.randn(2, 3, 32, 32))
    assert model.head.in_features == 8 + 32 == feats.shape[1]


def fmnist_config(name, tmp_path, train_samples=16, val_samples=32):
    _register_standins()
    cfg = Config.fromfile(osp.join(CONFIGS, name))
    cfg.work_dir = str(tmp_path / 'work')
    cfg.model.backbone.update(embed_dim=32, depth=2, num_heads=2)
    for loader, n in ((cfg.train_dataloader, train_samples), (cfg.val_dataloader, val_samples)):
        loader.update(batch_size=8, num_workers=0, persistent_workers=False)
        loader.dataset.num_samples = n
    cfg.test_dataloader = copy.deepcopy(cfg.val_dataloader)
    cfg.train_cfg.max_epochs = 1
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint.save_best = None
    cfg.randomness = dict(seed=0)
    return cfg


def accuracy_by_hand(model, dataloader):
    hits = total = 0
    model.eval()
    with torch.no_grad():
        for batch in dataloader:
            data = model.data_preprocessor(batch, False)
            labels = torch.cat([s.gt_label for s in data['data_samples']])
            hits += (model(data['inputs']).argmax(1) == labels).sum().item()
            total += len(labels)
    return 100 * hits / total


@pytest.mark.skipif(not osp.isdir(FMNIST), reason='Fashion-MNIST not installed')
def test_finetune_two_iterations_then_evaluate(tmp_path):
    cfg = fmnist_config('vit-tiny_ft_fmnist.py', tmp_path)
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 2
    groups = runner.optim_wrapper.optimizer.param_groups
    assert max(g['lr_scale'] for g in groups) == 1 and min(g['lr_scale'] for g in groups) == pytest.approx(0.65 ** 3)
    metrics = runner.test()
    assert set(metrics) == {'accuracy/top1', 'accuracy/top5'}
    assert metrics['accuracy/top1'] == pytest.approx(accuracy_by_hand(runner.model, runner.test_dataloader))


@pytest.mark.skipif(not osp.isdir(FMNIST), reason='Fashion-MNIST not installed')
def test_linear_probe_from_converted_checkpoint(tmp_path):
    cfg = fmnist_config('vit-tiny_linprobe_fmnist.py', tmp_path)
    pretrained = VisionTransformer(**{k: v for k, v in cfg.model.backbone.items() if k not in ('type', 'init_cfg')})
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in pretrained.state_dict().items()}},
               tmp_path / 'converted.pth')
    cfg.model.backbone.init_cfg.checkpoint = str(tmp_path / 'converted.pth')
    runner = Runner.from_cfg(cfg)
    head_before = runner.model.head.weight.detach().clone()
    runner.train()
    for name, value in pretrained.state_dict().items():  # loaded through the prefix, then frozen
        assert torch.equal(runner.model.backbone.state_dict()[name], value), name
    assert not torch.equal(runner.model.head.weight, head_before)
    assert type(runner.optim_wrapper.optimizer).__name__ == 'Lars'
    metrics = runner.test()
    assert metrics['accuracy/top1'] == pytest.approx(accuracy_by_hand(runner.model, runner.test_dataloader))
