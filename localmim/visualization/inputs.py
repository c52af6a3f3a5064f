"""What the picture tools share: a model from a config + checkpoint, and a batch of test images.

Images are shown to the model the deterministic way: Fashion-MNIST items (grey replicated to RGB)
or image files (RGB), resized to the encoder's input size (bicubic, aspect ratio ignored), then
normalised by the model's own data preprocessor.
"""
import os.path as osp

import numpy as np
import torch
from mmengine.config import Config

from ..checkpoint import load_checkpoint_file
from ..conversion import detect_format, unwrap_state_dict
from ..conversion.release import convert_release_vit_pretrain
from ..datasets.fashion_mnist import DEFAULT_FASHION_MNIST_ROOT, FASHION_MNIST_CLASSES, load_fashion_mnist
from ..datasets.transforms import LoadImage, Resize
from ..registry import build_model

__all__ = ['read_checkpoint', 'load_model', 'load_images', 'preprocess']


def read_checkpoint(path):
    """Checkpoint file -> dict, weights-only."""
    return load_checkpoint_file(path, map_location='cpu')


def load_model(config, checkpoint=None, cfg_options=None):
    """Build ``cfg.model`` in eval mode and load ``checkpoint`` into it.

    Args:
        config: config file path or ``Config``.
        checkpoint: a localmim/mmengine checkpoint (``state_dict`` inside), a LocalMIM release ViT
            checkpoint (``model`` inside, converted on the fly), or None / ``'random'`` to keep the
            random initialisation.
        cfg_options: dict merged into the config (as ``--cfg-options``).

    Returns:
        (model, cfg). Raises ValueError naming the file if its keys do not match the model.
    """
    cfg = config if isinstance(config, Config) else Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if 'model' not in cfg:
        raise KeyError(f'config {getattr(cfg, "filename", config)} has no "model" entry')
    model = build_model(cfg.model)
    if checkpoint not in (None, 'random'):
        state = unwrap_state_dict(read_checkpoint(checkpoint))
        if detect_format(state) == 'release-vit':
            state, _ = convert_release_vit_pretrain(state)
        state = {k[len('module.'):] if k.startswith('module.') else k: v for k, v in state.items()}
        own = model.state_dict()
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        shapes = [f'{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}'
                  for k in own if k in state and state[k].shape != own[k].shape]
        if missing or unexpected or shapes:
            raise ValueError(f'checkpoint {checkpoint} does not match the model of {cfg.filename}: '
                             f'missing {missing[:5]} ({len(missing)}), unexpected {unexpected[:5]} '
                             f'({len(unexpected)}), shape mismatches {shapes[:3]} ({len(shapes)})')
        model.load_state_dict(state)
    return model.eval(), cfg


def _fashion_mnist_root(cfg):
    dataset = cfg.get('train_dataloader', {}).get('dataset', {})
    return dataset.get('data_root', DEFAULT_FASHION_MNIST_ROOT) if 'FashionMNIST' in str(
        dataset.get('type', '')) else DEFAULT_FASHION_MNIST_ROOT


def load_images(img_size, indices=None, image_files=None, data_root=None, split='test', cfg=None):
    """A batch of test images, resized to ``img_size``.

    Args:
        indices: Fashion-MNIST indices of ``split`` (used when no ``image_files``).
        image_files: image paths (any format Pillow reads).
        data_root: Fashion-MNIST folder; default: the config's dataset root, else the Debian path.

    Returns:
        (images uint8 [B, 3, img_size, img_size] RGB, names list of str).
    """
    resize = Resize(img_size, interpolation='bicubic')
    if image_files:
        load = LoadImage()
        arrays = [resize.transform(load.transform(dict(img_path=path)))['img'] for path in image_files]
        names = [osp.basename(path) for path in image_files]
    else:
        root = data_root or (_fashion_mnist_root(cfg) if cfg is not None else DEFAULT_FASHION_MNIST_ROOT)
        grey, labels = load_fashion_mnist(root, split)
        indices = list(range(8)) if indices is None else list(indices)
        bad = [i for i in indices if not 0 <= i < len(grey)]
        if bad:
            raise IndexError(f'Fashion-MNIST {split} indices {bad} out of range [0, {len(grey)}) in {root}')
        arrays = [resize.transform(dict(img=np.repeat(grey[i][:, :, None], 3, 2)))['img'] for i in indices]
        names = [f'{split}[{i}] {FASHION_MNIST_CLASSES[labels[i]]}' for i in indices]
    images = torch.stack([torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))) for a in arrays])
    return images, names


@torch.no_grad()
def preprocess(model, images):
    """uint8 [B, 3, H, W] -> the model's normalised float inputs [B, 3, H, W]."""
    return model.data_preprocessor(dict(inputs=list(images)), False)['inputs']
