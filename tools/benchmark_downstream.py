#!/usr/bin/env python
"""Cost of a downstream (mmdet / mmseg) config's training step, and a short real run of it.

Default: builds the config's model (random weights) and, on synthetic inputs of the config's input
size (mmseg: the crop; mmdet: the test pipeline's Resize scale, then its Pad size), measures
  * train step: data preprocessor, forward, losses, backward and the config's optimizer update;
  * test forward: ``predict`` in eval mode (slide inference where the config says so);
  * backbone: the backbone's forward + backward alone on the same images (its share of the step).
Each after ``--warmup`` untimed repeats; prints time, images/s and peak memory. Peak memory is
``max_memory_allocated`` on CUDA, the peak resident set size (VmHWM, reset before each phase) on
CPU. Default batch: 1 on CPU (2 for mmseg: BatchNorm after UperNet's 1x1 pooling needs two values
per channel), the config's per-GPU batch on CUDA. SyncBN runs as plain BN (one process); a config
with mmengine's ``AmpOptimWrapper`` trains with AMP on CUDA and in float32 on CPU (where that
wrapper refuses to start), one with ``localmim.AmpOptimWrapper`` (the shipped full-size configs)
with AMP everywhere (bf16 on CPU).

``--steps N``: writes a tiny dataset of the config's input size in the config's own layout (COCO
json + images, or ADE-style images + label maps; random shapes), then runs mmengine's Runner for
N training iterations and one validation pass on it (the config's pipelines, model, optimizer,
evaluator), so a broken pipeline or shape shows before a GPU hour is spent.

    python tools/benchmark_downstream.py mm_configs/coco/mask-rcnn_localmim-vit-b_simplefpn_lsj-1024-100e_coco.py
    python tools/benchmark_downstream.py CONFIG --steps 2 --work-dir work_dirs/dry_run
"""
import argparse
import copy
import ctypes
import importlib
import inspect
import json
import os
import os.path as osp
import statistics
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.model import revert_sync_batchnorm  # noqa: E402
from mmengine.optim import build_optim_wrapper  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config')
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--batch-size', type=int, help='default: 1 on CPU (2 for mmseg), the config\'s on CUDA')
    p.add_argument('--warmup', type=int, default=1, help='untimed repeats before each measurement')
    p.add_argument('--iters', type=int, default=1, help='timed repeats (the median is reported)')
    p.add_argument('--steps', type=int, help='instead: N real training iterations + validation on tiny data')
    p.add_argument('--work-dir', help='--steps: where the data and logs go (default: a temporary folder)')
    p.add_argument('--threads', type=int, help='torch CPU threads')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, default={}, help='config overrides')
    return p.parse_args(argv)


def load_config(path, options=None):
    cfg = Config.fromfile(path)
    cfg.merge_from_dict(options or {})
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    return cfg


# ---- sizes and synthetic samples -----------------------------------------------------------------
def input_size(cfg):
    """(H, W) of the images the config's model sees: mmseg's crop, or mmdet's test Resize scale
    (w, h) taken as an image of exactly that size, padded to the test pipeline's Pad size if any."""
    if cfg.default_scope == 'mmseg':
        crop = next(t['crop_size'] for t in cfg.train_pipeline if t['type'] == 'RandomCrop')
        return tuple(crop)
    steps = {t['type']: t for t in cfg.test_pipeline}
    w, h = steps['Resize']['scale']
    pad = steps.get('Pad', {}).get('size')
    return (max(h, pad[1]), max(w, pad[0])) if pad else (h, w)


def synthetic_batch(cfg, batch, size, seed=0):
    """``{'inputs', 'data_samples'}`` as a dataloader yields them: uint8 images [3, H, W] and
    ground truth (mmdet: 8 boxes with box masks per image; mmseg: a random label map)."""
    g = torch.Generator().manual_seed(seed)
    h, w = size
    inputs = [torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8) for _ in range(batch)]
    meta = dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w), scale_factor=(1., 1.), flip=False)
    if cfg.default_scope == 'mmseg':
        from mmengine.structures import PixelData
        from mmseg.structures import SegDataSample
        samples = []
        for _ in range(batch):
            s = SegDataSample(metainfo=meta)
            s.gt_sem_seg = PixelData(data=torch.randint(0, cfg.model.decode_head.num_classes, (1, h, w), generator=g))
            samples.append(s)
        return dict(inputs=inputs, data_samples=samples)
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData
    num_classes = cfg.model.roi_head.bbox_head.num_classes
    samples = []
    for i in range(batch):
        corners = torch.rand(8, 2, 2, generator=g) * torch.tensor([w, h])
        boxes = torch.cat([corners.amin(1), corners.amax(1) + 8], 1).clamp(max=torch.tensor([w, h, w, h]))
        masks = np.zeros((8, h, w), np.uint8)
        for m, (x0, y0, x1, y1) in zip(masks, boxes.int().tolist()):
            m[y0:y1, x0:x1] = 1
        s = DetDataSample(metainfo=dict(meta, img_id=i))
        s.gt_instances = InstanceData(bboxes=boxes, labels=torch.randint(0, num_classes, (8,), generator=g),
                                      masks=BitmapMasks(masks, h, w))
        samples.append(s)
    return dict(inputs=inputs, data_samples=samples)


# ---- measuring -----------------------------------------------------------------------------------
class PeakMemory:
    """Peak memory in GiB of the code run inside ``with``: CUDA's allocator peak, or on CPU the peak
    resident set size (Linux VmHWM, reset on entry; large blocks are handed back to the OS on free
    so that it follows the live tensors)."""

    def __init__(self, device):
        self.device, self.peak, self.reserved = device, None, None
        if device.type == 'cpu':
            libc = ctypes.CDLL('libc.so.6')
            libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD: a fixed 128 KiB, no dynamic raise
            libc.malloc_trim(0)

    @staticmethod
    def _rss_kib(field):
        with open('/proc/self/status') as status:
            return next(int(line.split()[1]) for line in status if line.startswith(field))

    def __enter__(self):
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()  # so that the reserved peak is this phase's own
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            with open('/proc/self/clear_refs', 'w') as f:
                f.write('5')  # resets VmHWM to the current RSS
        return self

    def __exit__(self, *exc):
        if self.device.type == 'cuda':
            self.peak = torch.cuda.max_memory_allocated(self.device) / 2 ** 30
            self.reserved = torch.cuda.max_memory_reserved(self.device) / 2 ** 30  # what the card must hold
        else:
            self.peak = self._rss_kib('VmHWM:') / 2 ** 20


def measure(fn, device, warmup, iters):
    """(median seconds, peak GiB) of ``fn`` over ``iters`` timed calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    with PeakMemory(device) as memory:
        for _ in range(iters):
            start = time.perf_counter()
            fn()
            if device.type == 'cuda':
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - start)
    if memory.reserved is not None:
        print(f'[CUDA allocator: peak {memory.peak:.2f} GiB allocated, {memory.reserved:.2f} GiB reserved]',
              file=sys.stderr, flush=True)
    return statistics.median(times), memory.peak


def default_batch(cfg, device):
    """The config's per-GPU batch on CUDA; on CPU 1, or 2 for mmseg (BatchNorm after UperNet's 1x1
    pooling needs two values per channel)."""
    if device.type == 'cuda':
        return cfg.train_dataloader.batch_size
    return 2 if cfg.default_scope == 'mmseg' else 1


def build_model(cfg, device):
    from mmengine.registry import MODELS
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.backbone.pop('init_cfg', None)  # random weights: no pretrained file needed
    model = MODELS.build(model_cfg)
    return revert_sync_batchnorm(model).to(device)


def benchmark(cfg, device, batch=None, warmup=1, iters=1):
    """({phase: (seconds, peak GiB)} for 'train step', 'backbone', 'test forward'; batch; trainable parameters)."""
    batch = batch or default_batch(cfg, device)
    model = build_model(cfg, device)
    wrapper_cfg = copy.deepcopy(cfg.optim_wrapper)
    if device.type != 'cuda' and wrapper_cfg.get('type') == 'AmpOptimWrapper':
        wrapper_cfg.type = 'OptimWrapper'
        wrapper_cfg.pop('loss_scale', None)
    optim_wrapper = build_optim_wrapper(model, wrapper_cfg)
    data = synthetic_batch(cfg, batch, input_size(cfg))
    results = {}

    def train_step():
        model.train_step(data, optim_wrapper)

    def test_forward():
        with torch.no_grad():
            model.test_step(data)

    def backbone_step():
        inputs = model.data_preprocessor(data, True)['inputs']
        with optim_wrapper.optim_context(model):
            loss = sum(out.float().mean() for out in model.backbone(inputs))
        loss.backward()
        model.zero_grad(set_to_none=True)

    for phase, fn, train in [('train step', train_step, True), ('backbone', backbone_step, True),
                             ('test forward', test_forward, False)]:
        model.train(train)
        results[phase] = measure(fn, device, warmup, iters)
        print(f'[{phase}: {results[phase][0]:.2f} s, peak {results[phase][1]:.2f} GiB]', file=sys.stderr, flush=True)
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return results, batch, params


def report(config, device, batch, size, results, params):
    name = torch.cuda.get_device_name(device) if device.type == 'cuda' else f'CPU, {torch.get_num_threads()} threads'
    lines = [f'config      : {config}',
             f'device      : {name}; batch {batch}, input {size[0]}x{size[1]}; torch {torch.__version__}; '
             f'{time.strftime("%Y-%m-%d", time.gmtime())}']
    for phase, (seconds, peak) in results.items():
        lines.append(f'{phase:<12}: {seconds:8.3f} s  {batch / seconds:8.2f} images/s  peak {peak:6.2f} GiB')
    share = results['backbone'][0] / results['train step'][0]
    lines.append(f'backbone share of the train step: {100 * share:.0f}% of the time '
                 f'(forward + backward alone, no heads, no optimizer)')
    lines.append(f'trainable parameters: {params / 1e6:.1f} M; float32 weights, gradients and two AdamW moments '
                 f'take {16 * params / 2 ** 30:.2f} GiB (the moments appear during the first step: a peak without '
                 f'--warmup holds them only partly)')
    return '\n'.join(lines)


# ---- --steps: a short real run on tiny generated data --------------------------------------------
def innermost_dataset(loader_cfg):
    dataset = loader_cfg.dataset
    while 'dataset' in dataset:  # wrappers (RepeatDataset, ...)
        dataset = dataset.dataset
    return dataset


def random_rectangles(rng, size, count):
    """``count`` random rectangles inside an (H, W) image as (x0, y0, x1, y1) ints, at least 16 px wide."""
    h, w = size
    shapes = []
    for _ in range(count):
        x0, y0 = int(rng.integers(0, w - 16)), int(rng.integers(0, h - 16))
        shapes.append((x0, y0, int(rng.integers(x0 + 16, w + 1)), int(rng.integers(y0 + 16, h + 1))))
    return shapes


def write_image(path, image):
    import mmcv
    os.makedirs(osp.dirname(path), exist_ok=True)
    mmcv.imwrite(image, path)


def dataset_class_and_names(cfg, dataset):
    """The dataset config's class (from the config scope's registry) and its class names."""
    dataset_cls = importlib.import_module(f'{cfg.default_scope}.registry').DATASETS.get(dataset.type)
    return dataset_cls, (dataset.get('metainfo') or {}).get('classes') or dataset_cls.METAINFO['classes']


def write_segmentation_split(dataset, dataset_cls, classes, root, size, num_images, rng):
    """Random images and label maps (3 rectangles of random classes >= 1) in an mmseg dataset's layout."""
    defaults = {k: v.default for k, v in inspect.signature(dataset_cls.__init__).parameters.items()}
    img_suffix = dataset.get('img_suffix', defaults.get('img_suffix', '.jpg'))
    seg_suffix = dataset.get('seg_map_suffix', defaults.get('seg_map_suffix', '.png'))
    for i in range(num_images):
        labels = np.zeros(size, np.uint8)  # 0: ignored with reduce_zero_label (ADE20K), else class 0
        for x0, y0, x1, y1 in random_rectangles(rng, size, 3):
            labels[y0:y1, x0:x1] = rng.integers(1, len(classes))
        write_image(osp.join(root, dataset.data_prefix['img_path'], f'{i:04d}{img_suffix}'),
                    rng.integers(0, 256, (*size, 3), dtype=np.uint8))
        write_image(osp.join(root, dataset.data_prefix['seg_map_path'], f'{i:04d}{seg_suffix}'), labels)


def write_coco_split(dataset, classes, root, size, num_images, rng):
    """Random images with 3 rectangle instances each and their COCO json; returns the json's path."""
    h, w = size
    images, annotations = [], []
    for i in range(num_images):
        file_name = f'{i:04d}.jpg'
        write_image(osp.join(root, dataset.data_prefix['img'], file_name),
                    rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        images.append(dict(id=i + 1, file_name=file_name, height=h, width=w))
        for x0, y0, x1, y1 in random_rectangles(rng, size, 3):
            annotations.append(dict(
                id=len(annotations) + 1, image_id=i + 1, category_id=int(rng.integers(1, len(classes) + 1)),
                bbox=[x0, y0, x1 - x0, y1 - y0], area=(x1 - x0) * (y1 - y0), iscrowd=0,
                segmentation=[[x0, y0, x1, y0, x1, y1, x0, y1]]))
    ann_file = osp.join(root, dataset.ann_file)
    os.makedirs(osp.dirname(ann_file), exist_ok=True)
    with open(ann_file, 'w') as file:
        json.dump(dict(images=images, annotations=annotations,
                       categories=[dict(id=i + 1, name=name) for i, name in enumerate(classes)]), file)
    return ann_file


def write_tiny_split(cfg, dataset, root, size, num_images, rng):
    """``num_images`` random images of ``size`` with ground truth, in ``dataset``'s layout under
    ``root``; returns the COCO json's path (mmdet) or None (mmseg)."""
    dataset_cls, classes = dataset_class_and_names(cfg, dataset)
    if cfg.default_scope == 'mmseg':
        return write_segmentation_split(dataset, dataset_cls, classes, root, size, num_images, rng)
    return write_coco_split(dataset, classes, root, size, num_images, rng)


def short_run(cfg, steps, work_dir, device, batch=None):
    """Train ``steps`` iterations then validate once on tiny generated data; returns the val metrics."""
    from localmim.engine.launch import build_runner
    rng = np.random.default_rng(0)
    size = input_size(cfg)
    root = osp.join(work_dir, 'data')
    train_set = innermost_dataset(cfg.train_dataloader)
    val_set = innermost_dataset(cfg.val_dataloader)
    train_set.data_root = val_set.data_root = root
    write_tiny_split(cfg, train_set, root, size, 2, rng)
    val_ann = write_tiny_split(cfg, val_set, root, size, 1, rng)
    if val_ann is not None:
        cfg.val_evaluator.ann_file = val_ann
    cfg.model.backbone.pop('init_cfg', None)
    cfg.work_dir = osp.join(work_dir, 'run')
    cfg.train_dataloader.batch_size = batch or default_batch(cfg, device)
    for loader in (cfg.train_dataloader, cfg.val_dataloader):
        loader.update(num_workers=0, persistent_workers=False)
    cfg.val_dataloader.batch_size = 1
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=steps, val_interval=steps)
    cfg.val_cfg = dict(type='ValLoop')
    cfg.pop('test_dataloader'), cfg.pop('test_cfg'), cfg.pop('test_evaluator')
    cfg.default_hooks.checkpoint = None
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.log_processor = dict(by_epoch=False)
    cfg.load_from, cfg.resume = None, False
    if device.type != 'cuda' and cfg.optim_wrapper.get('type') == 'AmpOptimWrapper':
        cfg.optim_wrapper.type = 'OptimWrapper'
        cfg.optim_wrapper.pop('loss_scale', None)
    runner = build_runner(cfg)
    with PeakMemory(device) as memory:
        runner.train()
    print(f'[peak memory of the run (training and validation): {memory.peak:.2f} GiB]', file=sys.stderr, flush=True)
    scalars = runner.message_hub.log_scalars
    return {k[len('val/'):]: float(v.current()) for k, v in scalars.items()
            if k.startswith('val/') and k not in ('val/time', 'val/data_time')}


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config, args.cfg_options)
    device = torch.device(args.device)
    if args.steps:
        work_dir = args.work_dir or tempfile.mkdtemp(prefix='benchmark_downstream_')
        start = time.perf_counter()
        metrics = short_run(cfg, args.steps, work_dir, device, args.batch_size)
        note = metrics or '(none: the evaluator had no predictions to score, as from untrained weights)'
        print(f'{args.steps} training iterations and a validation pass at {input_size(cfg)} on tiny generated data '
              f'in {time.perf_counter() - start:.1f} s; logs in {work_dir}/run; val metrics: {note}')
        return metrics
    results, batch, params = benchmark(cfg, device, args.batch_size, args.warmup, args.iters)
    print(report(args.config, device, batch, input_size(cfg), results, params))
    return results


if __name__ == '__main__':
    main()
