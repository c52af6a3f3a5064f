"""``localmim.DaliImageNetLoader``: the ImageNet pretraining input pipeline on the GPU (NVIDIA DALI).

Select it in a pretraining config (with ``localmim.Runner``, the runner of ``tools/train.py``)::

    train_dataloader = dict(type='localmim.DaliImageNetLoader')  # merged into the CPU loader's dict

or with ``--cfg-options train_dataloader.type=localmim.DaliImageNetLoader``. DALI is an optional
extra: ``pip install -e '.[dali]'`` (``nvidia-dali-cuda130``). Without DALI or without a CUDA GPU the
same dict builds the CPU loader (torch ``DataLoader`` with its workers) instead, after one warning
saying why and how to install.

The augmentation is the CPU pipeline's, sample for sample: the host draws every random number as
the CPU pipeline does, from the sampler's (index, seed) pairs and with the pipeline's own
transforms: the crop box (:func:`~localmim.datasets.transforms.sample_resized_crop`), the flip
and the mask, and packs the same data samples (masks as host metainfo). DALI only executes: it
decodes the box's region of the JPEG on the GPU (``'mixed'``: nvJPEG or the hardware decoder, with
libjpeg's fancy chroma upsampling; EXIF orientation ignored, as Pillow does), resizes it to the
output size (cubic with antialiasing, PIL's filter family), flips it, and lays the batch out as
(N, 3, H, W) uint8 on the GPU for the model's data preprocessor. Every crop is decoded at full
resolution (no DCT scaling), i.e. exactly the reference ``resize(decoded[box])``.

Pipelines it runs: ``LoadImage`` -> ``RandomResizedCrop`` -> any of ``RandomHorizontalFlip`` /
``RandomFlip(direction='horizontal')``, ``RandomMaskGenerator`` -> ``PackInputs``.
"""
import collections
import io
import math
import random
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from mmcv.transforms import RandomFlip
from PIL import Image

from ..registry import DATA_LOADERS
from .masking import RandomMaskGenerator
from .transforms import (LoadImage, PackInputs, RandomHorizontalFlip, RandomResizedCrop, read_bytes,
                         sample_resized_crop, simplejpeg_header)

__all__ = ['DaliImageNetLoader', 'DaliPlanner', 'dali_unavailable_reason', 'build_data_loader']

INSTALL_HINT = "pip install -e '.[dali]' (or: pip install nvidia-dali-cuda130)"


def dali_unavailable_reason(device='gpu'):
    """Why DALI cannot run here (a sentence), or None. ``device='cpu'`` only needs the package."""
    try:
        import nvidia.dali  # noqa: F401
    except ImportError as err:
        return f'NVIDIA DALI is not installed ({err})'
    if device == 'gpu' and not torch.cuda.is_available():
        return 'no CUDA GPU is available (torch.cuda.is_available() is False)'
    return None


def build_data_loader(cfg, seed=None, diff_rank_seed=False):
    """Build a localmim data loader from a dataloader dict with a ``type`` (``localmim.Runner``)."""
    cfg = dict(cfg)
    loader_type = cfg.pop('type')
    loader_cls = DATA_LOADERS.get(loader_type) if isinstance(loader_type, str) else loader_type
    if loader_cls is None:
        raise KeyError(f'unknown train_dataloader type {loader_type!r}: the data loaders are '
                       f'{sorted(DATA_LOADERS.module_dict)} (or no type: the torch DataLoader)')
    return loader_cls.build(cfg, seed=seed, diff_rank_seed=diff_rank_seed)


def _is_horizontal_flip(transform):
    if isinstance(transform, RandomHorizontalFlip):
        return True
    direction = getattr(transform, 'direction', None)
    return isinstance(transform, RandomFlip) and direction in ('horizontal', ['horizontal'])


class DaliPlanner:
    """The host half of the DALI pipeline: what the CPU pipeline of ``dataset`` would do to sample
    (index, seed), minus the pixel work.

    ``plan(index, seed)`` reads the file and returns ``(encoded bytes, (top, left, h, w) box, flip,
    data_sample)``, drawing the random numbers in the CPU pipeline's order from the same seed, so the
    box, the flip and the mask are those of ``dataset[(index, seed)]``. The global ``random`` and
    numpy generators of the calling process are left as they were.
    """

    def __init__(self, dataset):
        transforms = list(dataset.pipeline.transforms)
        names = [type(t).__name__ for t in transforms]
        expected = ('LoadImage -> RandomResizedCrop -> [RandomHorizontalFlip or RandomFlip(direction='
                    "'horizontal')] -> [RandomMaskGenerator] -> PackInputs")
        if len(transforms) < 3 or not isinstance(transforms[0], LoadImage) or \
                not isinstance(transforms[1], RandomResizedCrop) or not isinstance(transforms[-1], PackInputs):
            raise ValueError(f'DaliImageNetLoader runs the pipeline {expected}; the dataset has {names}')
        for t in transforms[2:-1]:
            if not (_is_horizontal_flip(t) or isinstance(t, RandomMaskGenerator)):
                raise ValueError(f'DaliImageNetLoader cannot run {t!r} of the dataset pipeline {names} on the GPU '
                                 f'(it runs {expected}): remove it or use the CPU loader')
        self.dataset = dataset
        self.loader, self.crop, self.after_crop = transforms[0], transforms[1], transforms[2:]

    def read(self, index):
        info = self.dataset.get_data_info(index)
        return info, read_bytes(info['img_path'], self.loader.backend_args)

    def plan(self, index, seed=None, read=None):
        """``read``: ``self.read(index)`` done already (e.g. in an I/O thread)."""
        info, data = read or self.read(index)
        shape = simplejpeg_header(data)
        if shape is None:
            try:
                with Image.open(io.BytesIO(data)) as pil:
                    shape = (pil.height, pil.width)
            except Exception as err:
                raise OSError(f'cannot read image file {info["img_path"]}: {err}') from err
        if seed is not None:
            random.seed(int(seed))
            np.random.seed(int(seed))
        top, left, h, w = sample_resized_crop(shape[0], shape[1], self.crop.scale, self.crop.ratio)
        out_h, out_w = self.crop.size
        # the crop's output stands in as an empty (H, W, 0) image: flips and packing see its shape
        results = dict(info, img=np.empty((out_h, out_w, 0), np.uint8), img_shape=(out_h, out_w),
                       ori_shape=shape, crop_bbox=(left, top, left + w, top + h))
        for transform in self.after_crop[:-1]:  # flip and mask generator
            results = transform(results)
        packed = self.after_crop[-1](results)  # PackInputs
        return data, (top, left, h, w), bool(results.get('flip', False)), packed['data_samples']

    def plan_batch(self, items, read_pool=None):
        """Plans of ``items`` ((index, seed) pairs or indices), files read in ``read_pool``."""
        items = [item if isinstance(item, tuple) else (item, None) for item in items]
        reads = list((read_pool.map if read_pool else map)(self.read, [index for index, _ in items]))
        state = random.getstate(), np.random.get_state()
        try:
            return [self.plan(index, seed, read) for (index, seed), read in zip(items, reads)]
        finally:
            random.setstate(state[0])
            np.random.set_state(state[1])


@DATA_LOADERS.register_module()
class DaliImageNetLoader:
    """Batches ``dict(inputs=(N, 3, H, W) uint8 tensor on the GPU, data_samples=[...])`` of an
    image-folder dataset, decoded and augmented by NVIDIA DALI (see the module doc).

    Args:
        dataset: a built dataset (``localmim.ImageNet``) with the pipeline the module doc lists.
        sampler: a built sampler: ``localmim.SeededSampler`` ((index, seed) pairs) or any sampler of
            indices; ``set_epoch`` goes through to it (mmengine's ``DistSamplerSeedHook``).
        batch_size: samples per batch (per GPU).
        drop_last: drop the last incomplete batch of an epoch.
        num_threads: DALI CPU threads (host parts of the decode) and file-reading threads.
        prefetch_queue_depth: batches DALI prepares ahead.
        device: ``'gpu'`` (decode ``'mixed'``, on ``device_id`` or the current CUDA device) or ``'cpu'``
            (DALI's CPU-only mode: libjpeg-turbo, CPU resize; CPU tensors; for checks without a GPU).
        device_id: CUDA device (default: ``torch.cuda.current_device()``).
        hw_decoder_load: share of the JPEGs given to the hardware decoder where the GPU has one.
    """

    def __init__(self, dataset, sampler, batch_size, drop_last=True, num_threads=4, prefetch_queue_depth=2,
                 device='gpu', device_id=None, hw_decoder_load=0.65):
        if device not in ('gpu', 'cpu'):
            raise ValueError(f"DaliImageNetLoader device must be 'gpu' or 'cpu', got {device!r}")
        reason = dali_unavailable_reason(device)
        if reason is not None:
            raise RuntimeError(f'DaliImageNetLoader: {reason}; {INSTALL_HINT}')
        self.planner = DaliPlanner(dataset)
        self.dataset, self.sampler = dataset, sampler
        self.batch_size, self.drop_last = int(batch_size), drop_last
        self.num_threads, self.prefetch_queue_depth = num_threads, prefetch_queue_depth
        self.device, self.device_id, self.hw_decoder_load = device, device_id, hw_decoder_load
        self._pipe = None
        self._samples = collections.deque()  # data samples of the batches DALI has taken, in order
        self._batches = iter(())
        self._exhausted = True  # the pipeline finished its last epoch (or never ran)
        self._read_pool = ThreadPoolExecutor(max(1, num_threads), thread_name_prefix='dali-read')

    @classmethod
    def build(cls, cfg, seed=None, diff_rank_seed=False):
        """From a train_dataloader dict (see the module doc): the CPU DataLoader's dataset and sampler,
        built as mmengine builds them, under DALI; the CPU DataLoader itself, with a warning, where
        DALI or a GPU is missing. DALI options go in ``dali=dict(...)`` (this class's arguments)."""
        from mmengine.runner import Runner as MMEngineRunner
        cfg = dict(cfg)
        options = dict(cfg.pop('dali', None) or {})
        device = options.get('device', 'gpu')
        reason = dali_unavailable_reason(device)
        if reason is None:  # only the dataset and the sampler serve: no worker processes
            cfg.update(num_workers=0, persistent_workers=False, pin_memory=False)
        loader = MMEngineRunner.build_dataloader(cfg, seed=seed, diff_rank_seed=diff_rank_seed)
        if reason is not None:
            warnings.warn(f'localmim.DaliImageNetLoader: {reason}, so the CPU input pipeline runs instead '
                          f'(torch DataLoader, {loader.num_workers} workers, the same augmentation). For GPU '
                          f'decoding: {INSTALL_HINT}', UserWarning, stacklevel=2)
            return loader
        return cls(loader.dataset, loader.sampler, loader.batch_size, drop_last=loader.drop_last, **options)

    def __len__(self):
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _epoch_batches(self):
        batch = []
        for item in self.sampler:
            batch.append(item)
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch and not self.drop_last:
            yield batch

    def _source(self):
        """DALI's external source: the next batch's encoded files, boxes and flips."""
        batch = next(self._batches, None)
        if batch is None:
            raise StopIteration
        plans = self.planner.plan_batch(batch, self._read_pool)
        self._samples.append([p[3] for p in plans])
        return ([np.frombuffer(p[0], np.uint8) for p in plans],
                [np.array(p[1][:2], np.int32) for p in plans],
                [np.array(p[1][2:], np.int32) for p in plans],
                [np.array(int(p[2]), np.int32) for p in plans])

    def _build_pipeline(self):
        from nvidia.dali import Pipeline, fn, types
        interp = {'bicubic': types.INTERP_CUBIC, 'bilinear': types.INTERP_LINEAR,
                  'nearest': types.INTERP_NN}[self.planner.crop.interpolation]
        gpu = self.device == 'gpu'
        device_id = (self.device_id if self.device_id is not None else torch.cuda.current_device()) if gpu else None
        pipe = Pipeline(batch_size=self.batch_size, num_threads=self.num_threads, device_id=device_id,
                        prefetch_queue_depth=self.prefetch_queue_depth)
        with pipe:
            jpegs, anchors, shapes, flips = fn.external_source(
                source=self._source, num_outputs=4, batch=True,
                dtype=[types.UINT8, types.INT32, types.INT32, types.INT32])
            decode_options = dict(hw_decoder_load=self.hw_decoder_load, jpeg_fancy_upsampling=True) if gpu else {}
            images = fn.decoders.image_slice(jpegs, anchors, shapes, device='mixed' if gpu else 'cpu',
                                             output_type=types.RGB, axis_names='HW', adjust_orientation=False,
                                             **decode_options)
            images = fn.resize(images, size=list(self.planner.crop.size), interp_type=interp,
                               antialias=interp != types.INTERP_NN)
            images = fn.crop_mirror_normalize(images, dtype=types.UINT8, output_layout='CHW', mirror=flips)
            pipe.set_outputs(images)
        pipe.build()
        return pipe

    def __iter__(self):
        if self._pipe is None or not self._exhausted:  # first epoch, or the last one was left midway
            self._samples.clear()
            self._batches = self._epoch_batches()
            self._pipe = self._build_pipeline()
        else:
            self._batches = self._epoch_batches()
            self._pipe.reset()
        self._exhausted = False
        while True:
            try:
                (images,) = self._pipe.run()
            except StopIteration:
                self._exhausted = True
                return
            yield dict(inputs=self._to_torch(images), data_samples=self._samples.popleft())

    def _to_torch(self, images):
        images = images.as_tensor()
        if self.device == 'cpu':
            return torch.from_numpy(np.array(images))
        from nvidia.dali.plugin.pytorch import feed_ndarray
        device = torch.device('cuda', self._pipe.device_id)
        out = torch.empty(images.shape(), dtype=torch.uint8, device=device)
        feed_ndarray(images, out, cuda_stream=torch.cuda.current_stream(device))
        return out

    def __repr__(self):
        return (f'{type(self).__name__}(batch_size={self.batch_size}, device={self.device!r}, '
                f'num_threads={self.num_threads}, dataset={type(self.dataset).__name__} of {len(self.dataset)})')
