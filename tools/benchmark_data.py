#!/usr/bin/env python
"""Images/s of one loader process for the pretraining and fine-tuning input pipelines.

Writes ImageNet-like JPEGs (about 500x375, quality 90: smooth colour fields plus grain, in class
folders) and times, in one process with one torch thread (a loader worker), each round passing
chunks of the images through each pipeline in turn, so that load changes affect every pipeline alike
(images/s of wall-clock time, and of the thread's CPU time, which other processes disturb less):
  * torchvision: ``ImageFolder`` + ``RandomResizedCrop(224, scale=(0.2, 1), bicubic, antialias)`` +
    flip + ``PILToTensor`` (the plain reference; uint8 out like ours);
  * pretrain: the release's pipeline in localmim (Pillow full decode, PIL bicubic, mmcv's RandomFlip);
  * pretrain-lazy: the same with ``LoadImage(lazy=True, decoder='pillow')``: JPEGs decoded by the crop,
    at 1/2-1/8 scale when it allows (Pillow's ``draft``, see ``decode_resized_crop``);
  * pretrain-lazy-torch: lazy Pillow decode, and ``backend='torch'`` for the resize;
  * pretrain-simplejpeg: lazy simplejpeg decode, PIL resize;
  * pretrain-fast: the shipped ImageNet pretraining configs' pipeline (read from
    mm_configs/pretrain/localmim_vit-b_1600e_in1k.py: simplejpeg, torch resize, RandomHorizontalFlip);
  * finetune: the fine-tuning pipeline (timm RandAugment + random erasing, normalised float out);
  * dali (only with NVIDIA DALI and a CUDA GPU): ``localmim.DaliImageNetLoader``, whole batches
    decoded on the GPU; images/s of the loader, not of one CPU process.

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
from mmengine.config import Config
from mmengine.registry import DefaultScope
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import localmim  # noqa: E402,F401  (registers the transforms)
from localmim.datasets import ImageNet  # noqa: E402
from localmim.datasets.dali import DaliImageNetLoader, dali_unavailable_reason  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_CONFIG = ROOT / 'mm_configs' / 'pretrain' / 'localmim_vit-b_1600e_in1k.py'


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--images', type=int, default=200, help='JPEGs written (and timed per round)')
    p.add_argument('--rounds', type=int, default=3, help='timed passes over the images per pipeline')
    p.add_argument('--root', default=None, help='folder for the JPEGs (default: a temporary one)')
    p.add_argument('--only', nargs='*', default=None, help='pipelines to time (default: all)')
    p.add_argument('--chunk', type=int, default=20, help='images per pipeline turn within a round')
    p.add_argument('--dali-batch', type=int, default=50, help='batch size of the DALI loader (GPU only)')
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


def pretrain_pipeline(lazy=False, backend='pillow', decoder='pillow', flip='RandomFlip'):
    return [dict(type='LoadImage', lazy=lazy, decoder=decoder),
            dict(type='RandomResizedCrop', size=224, scale=(0.2, 1.0), interpolation='bicubic', backend=backend),
            dict(type=flip, prob=0.5) if flip != 'RandomFlip' else dict(type=flip, prob=0.5, direction='horizontal'),
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


def build_samples(dataset, indices):
    for i in indices:
        dataset[i]


class DaliBenchmark:
    """Every image of the pretraining dataset through ``localmim.DaliImageNetLoader`` on the GPU."""

    def __init__(self, dataset, batch_size):
        self.loader = DaliImageNetLoader(dataset, list(range(len(dataset))), batch_size, drop_last=False)

    def run(self):
        count = 0
        for batch in self.loader:
            count += len(batch['inputs'])
        torch.cuda.synchronize()
        return count


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
            'pretrain-simplejpeg': ImageNet(root, pipeline=pretrain_pipeline(lazy=True, decoder='simplejpeg')),
            'pretrain-fast': ImageNet(root, pipeline=Config.fromfile(SHIPPED_CONFIG).train_pipeline),
            'finetune': ImageNet(root, pipeline=FINETUNE),
        }
        reason = dali_unavailable_reason()
        if reason is None:
            datasets['dali'] = DaliBenchmark(datasets['pretrain-fast'], args.dali_batch)
            datasets['dali'].run()  # warm-up: builds the DALI pipeline
        if args.only:
            datasets = {k: v for k, v in datasets.items() if k in args.only or k == 'torchvision'}
        rates = {name: [] for name in datasets}  # images per second of wall-clock time
        cpu_rates = {name: [] for name in datasets if name != 'dali'}  # per second of this thread's CPU time
        num_images = len(datasets['torchvision'])
        dali = datasets.pop('dali', None)
        np.random.seed(0)
        for dataset in datasets.values():  # warm-up: file cache, imports
            build_samples(dataset, range(min(10, num_images)))
        for _ in range(args.rounds):
            # chunks of the images through each pipeline in turn: load changes hit every pipeline alike
            seconds = {name: [0.0, 0.0] for name in datasets}  # wall, CPU
            for start in range(0, num_images, args.chunk):
                for name, dataset in datasets.items():
                    wall, cpu = time.perf_counter(), time.thread_time()
                    build_samples(dataset, range(start, min(start + args.chunk, num_images)))
                    seconds[name][0] += time.perf_counter() - wall
                    seconds[name][1] += time.thread_time() - cpu
            for name, (wall, cpu) in seconds.items():
                rates[name].append(num_images / wall)
                cpu_rates[name].append(num_images / cpu)
            if dali is not None:
                begin = time.perf_counter()
                count = dali.run()
                rates['dali'].append(count / (time.perf_counter() - begin))
    base, cpu_base = statistics.median(rates['torchvision']), statistics.median(cpu_rates['torchvision'])
    print(f'{num_images} JPEGs (500x375 / 375x500, q90), 1 process, 1 torch thread, {args.rounds} rounds '
          f'(median, min-max); images/s of wall-clock time, and of its CPU time (less sensitive to other processes)')
    for name, values in rates.items():
        median = statistics.median(values)
        line = (f'{name:20s}: {median:7.1f} images/s ({min(values):.1f}-{max(values):.1f}) '
                f'{median / base:5.2f}x torchvision')
        if name in cpu_rates:
            cpu = statistics.median(cpu_rates[name])
            line += f' | CPU time: {cpu:7.1f} images/s {cpu / cpu_base:5.2f}x'
        else:
            line += '  (GPU loader, not one CPU process)'
        print(line)
    if reason is not None:
        print(f'dali                : not run ({reason})')


if __name__ == '__main__':
    main()
