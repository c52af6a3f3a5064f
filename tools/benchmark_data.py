#!/usr/bin/env python
"""Images/s of one loader process for the pretraining and fine-tuning input pipelines.

Writes ImageNet-like JPEGs (about 500x375, quality 90: smooth colour fields plus grain, in class
folders) and times, in one process with one torch thread (a loader worker), in interleaved
rounds so that drift affects every pipeline alike:
  * torchvision: ``ImageFolder`` + ``RandomResizedCrop(224, scale=(0.2, 1), bicubic, antialias)`` +
    flip + ``PILToTensor`` (the plain reference; uint8 out like ours);
  * pretrain: the shipped ImageNet pretraining pipeline (full decode, PIL bicubic);
  * pretrain-lazy: the same with ``LoadImage(lazy=True)``: JPEGs decoded at 1/2-1/8 scale when the
    crop allows (see ``localmim.datasets.transforms.decode_resized_crop``);
  * pretrain-lazy-torch: lazy decode, and ``backend='torch'`` for crops decoded at full scale;
  * finetune: the fine-tuning pipeline (timm RandAugment + random erasing, normalised float out).

    python tools/benchmark_data.py --images 200 --rounds 3
"""
import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.registry import DefaultScope
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import localmim  # noqa: E402,F401  (registers the transforms)
from localmim.datasets import ImageNet  # noqa: E402


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--images', type=int, default=200, help='JPEGs written (and timed per round)')
    p.add_argument('--rounds', type=int, default=3, help='timed passes over the images per pipeline')
    p.add_argument('--root', default=None, help='folder for the JPEGs (default: a temporary one)')
    p.add_argument('--only', nargs='*', default=None, help='pipelines to time (default: all)')
    return p.parse_args()


def write_jpegs(root, count, seed=0):
    """``count`` JPEGs under root/train/<class>/, 500x375 or 375x500, quality 90."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        h, w = (375, 500) if i % 4 else (500, 375)
        low = torch.from_numpy(rng.normal(size=(1, 3, h // 25, w // 25))).float()
        img = F.interpolate(low, size=(h, w), mode='bicubic')[0] * 60 + 128
        img += torch.from_numpy(rng.normal(size=(3, h, w))).float() * 12
        folder = Path(root, 'train', f'n{i % 10:08d}')
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img.clamp(0, 255).byte().permute(1, 2, 0).numpy()).save(folder / f'{i:06d}.jpg', quality=90)


def pretrain_pipeline(lazy=False, backend='pillow'):
    return [dict(type='LoadImage', lazy=lazy),
            dict(type='RandomResizedCrop', size=224, scale=(0.2, 1.0), interpolation='bicubic', backend=backend),
            dict(type='RandomFlip', prob=0.5, direction='horizontal'),
            dict(type='RandomMaskGenerator', input_size=224, mask_unit=16, mask_ratio=0.75),
            dict(type='PackInputs')]


FINETUNE = [dict(type='LoadImage'),
            dict(type='TimmTransform', input_size=224, is_training=True, color_jitter=None,
                 auto_augment='rand-m9-mstd0.5-inc1-mmax9', interpolation='bicubic', re_prob=0.25,
                 re_mode='pixel', re_count=1),
            dict(type='PackInputs')]


def torchvision_dataset(root):
    from torchvision import transforms as T
    from torchvision.datasets import ImageFolder
    return ImageFolder(str(Path(root, 'train')), T.Compose([
        T.RandomResizedCrop(224, scale=(0.2, 1.0), interpolation=T.InterpolationMode.BICUBIC),
        T.RandomHorizontalFlip(), T.PILToTensor()]))


def main():
    args = parse_args()
    torch.set_num_threads(1)  # one loader worker
    DefaultScope.get_instance('benchmark_data', scope_name='localmim')
    with tempfile.TemporaryDirectory() as tmp:
        root = args.root or tmp
        if not Path(root, 'train').is_dir():
            write_jpegs(root, args.images)
        datasets = {
            'torchvision': torchvision_dataset(root),
            'pretrain': ImageNet(root, pipeline=pretrain_pipeline()),
            'pretrain-lazy': ImageNet(root, pipeline=pretrain_pipeline(lazy=True)),
            'pretrain-lazy-torch': ImageNet(root, pipeline=pretrain_pipeline(lazy=True, backend='torch')),
            'finetune': ImageNet(root, pipeline=FINETUNE),
        }
        if args.only:
            datasets = {k: v for k, v in datasets.items() if k in args.only or k == 'torchvision'}
        rates = {name: [] for name in datasets}
        np.random.seed(0)
        for name, dataset in datasets.items():  # warm-up: file cache, imports
            for i in range(min(10, len(dataset))):
                dataset[i]
        for _ in range(args.rounds):
            for name, dataset in datasets.items():
                start = time.perf_counter()
                for i in range(len(dataset)):
                    dataset[i]
                rates[name].append(len(dataset) / (time.perf_counter() - start))
    base = statistics.median(rates['torchvision'])
    print(f'{len(datasets["torchvision"])} JPEGs (500x375 / 375x500, q90), 1 process, 1 torch thread, '
          f'{args.rounds} rounds (median, min-max)')
    for name, values in rates.items():
        median = statistics.median(values)
        print(f'{name:20s}: {median:7.1f} images/s  ({min(values):.1f}-{max(values):.1f})  '
              f'{median / base:5.2f}x torchvision')


if __name__ == '__main__':
    main()
