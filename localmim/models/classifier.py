"""Image classifier for ImageNet fine-tuning and linear probing (MAE's protocols).

Fine-tuning (ViT): average of the last block's patch tokens -> ``fc_norm`` LayerNorm -> Linear
head (truncated-normal std 2e-5); mixup/cutmix by timm's ``Mixup`` with timm's
``SoftTargetCrossEntropy``, else timm's ``LabelSmoothingCrossEntropy``.
Linear probe: frozen backbone (eval mode) -> cls token after the final norm ->
BatchNorm1d without affine -> Linear head (std 0.01).
``features='taps'`` classifies what ``tools/linear_probe.py`` probes instead: every output map of
the backbone, LayerNorm-ed per token and averaged (:func:`pool_features`), so a fine-tune can start
from the probe's fitted layer (``tools/linear_probe.py --save-classifier``: LP-FT).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmengine.structures import BaseDataElement

from ..registry import MODELS, build_model

FEATURES = ('last', 'taps')


def pool_features(maps, grids=(1,), token_norm=True):
    """Backbone maps, each [B, D, h, w] -> [B, sum over maps of D * sum(g * g for g in grids)]:
    each map (LayerNorm-ed per token, no affine, if ``token_norm``) averaged over g x g cells for
    every g in ``grids`` (1 = the whole map), all concatenated."""
    feats = []
    for fmap in maps:
        if token_norm:
            fmap = F.layer_norm(fmap.permute(0, 2, 3, 1), fmap.shape[1:2]).permute(0, 3, 1, 2)
        for g in grids:
            feats.append(F.adaptive_avg_pool2d(fmap, g).flatten(1))
    return torch.cat(feats, dim=1)


@MODELS.register_module()
class ImageClassifier(BaseModel):
    """Backbone -> pooled vector [B, D] -> (fc_norm) -> (BatchNorm) -> head -> logits [B, classes].

    Args:
        backbone: backbone config.
        num_classes: number of classes.
        features: what is classified. ``'last'``: the backbone's LAST output, maps [B, D, h, w]
            averaged over space, vectors [B, D] (e.g. ViT ``out_type='cls_token'``) used as they
            are. ``'taps'``: every output map, LayerNorm-ed per token (no affine) and averaged,
            concatenated -> [B, sum of the maps' D] (:func:`pool_features`; the linear probe's
            features).
        in_channels: size of the classified vector; default ``backbone.num_features`` or
            ``backbone.embed_dim`` (``'last'``), the sum of ``backbone.out_channels()`` (``'taps'``).
        fc_norm: LayerNorm (eps 1e-6) on the pooled vector (MAE fine-tuning).
        linear_probe: BatchNorm1d (no affine, eps 1e-6) before the head, backbone frozen.
        head_init_std: truncated-normal std of the head weight (bias zero).
        label_smoothing: smoothing of the loss (or of the mixed targets with mixup).
        mixup: None or timm ``Mixup`` arguments (``mixup_alpha``, ``cutmix_alpha``, ``prob``,
            ``switch_prob``, ``mode``, ...); ``num_classes``/``label_smoothing`` are filled in.
            Applied to training batches in :meth:`loss` (the batch size must be even).
    """

    def __init__(self, backbone, num_classes, features='last', in_channels=None, fc_norm=True, linear_probe=False,
                 head_init_std=2e-5, label_smoothing=0.1, mixup=None, data_preprocessor=None, init_cfg=None):
        from timm.data import Mixup  # imported here: timm.data is slow to import
        from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.backbone = build_model(backbone)
        if features not in FEATURES:
            raise ValueError(f'ImageClassifier: features={features!r}; use one of {FEATURES}')
        self.features = features
        if in_channels is None and features == 'taps':
            in_channels = sum(self.backbone.out_channels())
        if in_channels is None:
            in_channels = getattr(self.backbone, 'num_features', None) or getattr(self.backbone, 'embed_dim', None)
            if in_channels is None:
                raise ValueError(f'ImageClassifier: give in_channels, {type(self.backbone).__name__} has neither '
                                 'num_features nor embed_dim')
        self.num_classes, self.linear_probe = num_classes, linear_probe
        self.fc_norm = nn.LayerNorm(in_channels, eps=1e-6) if fc_norm else nn.Identity()
        self.probe_norm = nn.BatchNorm1d(in_channels, affine=False, eps=1e-6) if linear_probe else nn.Identity()
        self.head = nn.Linear(in_channels, num_classes)
        nn.init.trunc_normal_(self.head.weight, std=head_init_std)
        nn.init.zeros_(self.head.bias)
        if linear_probe:
            self.backbone.requires_grad_(False)
        mixup = dict(mixup or {})
        active = mixup.get('mixup_alpha', 1.) > 0 or mixup.get('cutmix_alpha', 0.) > 0 or mixup.get('cutmix_minmax')
        self.mixup = Mixup(**(mixup | dict(num_classes=num_classes, label_smoothing=label_smoothing))) \
            if mixup and active else None
        self.label_smoothing = label_smoothing
        self.soft_loss = SoftTargetCrossEntropy()
        self.hard_loss = LabelSmoothingCrossEntropy(label_smoothing) if label_smoothing > 0 else nn.CrossEntropyLoss()

    def train(self, mode=True):
        super().train(mode)
        if self.linear_probe:
            self.backbone.eval()
        return self

    def extract_feat(self, inputs):
        """Images [B, C, H, W] -> pooled vector [B, in_channels] (before fc_norm)."""
        if self.features == 'taps':
            return pool_features(self.backbone(inputs))
        feat = self.backbone(inputs)[-1]
        return feat.mean(dim=(2, 3)) if feat.ndim == 4 else feat

    def forward(self, inputs, data_samples=None, mode='tensor'):
        if mode == 'tensor':
            return self.head(self.probe_norm(self.fc_norm(self.extract_feat(inputs))))
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        raise ValueError(f"invalid mode {mode!r}: use 'tensor', 'loss' or 'predict'")

    def check_checkpoint_meta(self, meta, filename):
        """Refuse a probe classifier file (``tools/linear_probe.py --save-classifier``, its ``meta``
        saying ``features='taps'``) whose features this model does not compute: its head would load
        (same shapes for taps at other indices) and classify the wrong features, or (``'last'``)
        be dropped with a size-mismatch warning."""
        if meta.get('features') != 'taps':
            return
        ours = dict(features=self.features, out_indices=list(getattr(self.backbone, 'out_indices', [])))
        theirs = dict(features='taps', out_indices=list(meta.get('out_indices', [])))
        if ours != theirs:
            raise ValueError(f"checkpoint {filename} is a classifier of features='taps' at backbone out_indices "
                             f"{theirs['out_indices']} (meta); this model computes features={self.features!r} at "
                             f"out_indices {ours['out_indices']}: set model.features='taps' and "
                             f"model.backbone.out_indices={tuple(theirs['out_indices'])}, or start from the "
                             "encoder checkpoint alone with model.backbone.init_cfg (type='Pretrained')")

    @staticmethod
    def gt_labels(data_samples, device):
        if not data_samples or any('gt_label' not in s for s in data_samples):
            raise ValueError('ImageClassifier.loss needs data_samples that all carry gt_label')
        return torch.cat([torch.as_tensor(s.gt_label).view(-1) for s in data_samples]).long().to(device)

    def loss(self, inputs, data_samples):
        labels = self.gt_labels(data_samples, inputs.device)
        if self.mixup is not None and self.training:
            if inputs.shape[0] % 2:
                raise ValueError(f'mixup/cutmix needs an even batch size, got {inputs.shape[0]} '
                                 '(use drop_last=True and an even batch_size)')
            inputs, targets = self.mixup(inputs, labels)
            return dict(loss=self.soft_loss(self(inputs), targets))
        return dict(loss=self.hard_loss(self(inputs), labels))

    @torch.no_grad()
    def predict(self, inputs, data_samples=None):
        """Data samples with ``pred_score`` [classes] (softmax) and ``pred_label`` [1]."""
        scores = F.softmax(self(inputs).float(), dim=1)
        data_samples = data_samples or [BaseDataElement() for _ in range(inputs.shape[0])]
        for sample, score in zip(data_samples, scores):
            sample.pred_score = score
            sample.pred_label = score.argmax().view(1)
        return data_samples
