"""Transforms on mmengine result dicts whose ``img`` is an (H, W, 3) uint8 numpy array in RGB order.

Pretraining pipeline of the release: ``LoadImage`` -> ``RandomResizedCrop(224, scale=(0.2, 1.0))``
-> ``dict(type='RandomFlip', prob=0.5)`` (mmcv's, horizontal) -> ``PackInputs``.
Fine-tuning: ``LoadImage`` -> ``TimmTransform(input_size=224, is_training=True, auto_augment=..., re_prob=...)``
-> ``PackInputs`` (timm's transform already normalises: the data preprocessor must not normalise again).
"""
import io
import logging

import numpy as np
import torch
import torch.nn.functional as F
from mmcv.transforms import BaseTransform
from mmengine.fileio import get as get_file_bytes
from mmengine.logging import print_log
from mmengine.structures import BaseDataElement
from PIL import Image

from localmim.registry import TRANSFORMS

__all__ = ['LoadImage', 'RandomResizedCrop', 'Resize', 'TimmTransform', 'PackInputs',
           'sample_resized_crop', 'resize_image', 'decode_resized_crop']

PIL_FILTERS = {'nearest': Image.NEAREST, 'bilinear': Image.BILINEAR, 'bicubic': Image.BICUBIC}
TORCH_MODES = {'nearest': 'nearest-exact', 'bilinear': 'bilinear', 'bicubic': 'bicubic'}


def _size_hw(size):
    """``int`` or ``(h, w)`` -> ``(h, w)``."""
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def decode_rgb(pil):
    """Decode an opened PIL image as RGB (a JPEG decodes straight to RGB: no converted copy)."""
    if pil.mode == 'RGB':
        pil.load()
        return pil
    return pil.convert('RGB')


def _set_image(results, img):
    results['img'] = img
    results['img_shape'] = tuple(img.shape[:2]) if isinstance(img, np.ndarray) else tuple(img.shape[-2:])


@TRANSFORMS.register_module()
class LoadImage(BaseTransform):
    """Read ``results['img_path']`` into ``img`` ((H, W, 3) uint8, RGB) with Pillow.

    Pillow refuses truncated files (unlike OpenCV, which silently pads them), so corrupt and
    truncated images are both caught.

    Args:
        on_error: ``'raise'``: an ``OSError`` naming the file; ``'skip'``: a warning, the count
            ``num_skipped`` grows and the transform returns None, so that a training-mode
            mmengine ``BaseDataset`` returns another sample instead.
        backend_args: mmengine file backend arguments.
        lazy: only read the header: ``img`` is the opened PIL image and ``img_shape`` its size;
            :class:`RandomResizedCrop` (which must come next) decodes just what its crop needs,
            a JPEG at 1/2, 1/4 or 1/8 scale when the crop allows it (see :func:`decode_resized_crop`).
            Needs ``on_error='raise'`` (a broken file raises at the crop, naming it).
    """

    def __init__(self, on_error='raise', backend_args=None, lazy=False):
        if on_error not in ('raise', 'skip'):
            raise ValueError(f"LoadImage on_error must be 'raise' or 'skip', got {on_error!r}")
        if lazy and on_error != 'raise':
            raise ValueError("LoadImage(lazy=True) decodes in RandomResizedCrop and needs on_error='raise'")
        self.on_error = on_error
        self.backend_args = backend_args
        self.lazy = lazy
        self.num_skipped = 0

    def transform(self, results):
        path = results['img_path']
        if self.lazy:
            try:
                pil = Image.open(io.BytesIO(get_file_bytes(path, backend_args=self.backend_args)))
            except Exception as err:
                raise OSError(f'cannot read image file {path}: {err}') from err
            results['img'], results['img_shape'] = pil, (pil.height, pil.width)
            results['ori_shape'] = results['img_shape']
            return results
        try:
            with Image.open(io.BytesIO(get_file_bytes(path, backend_args=self.backend_args))) as pil:
                img = np.asarray(decode_rgb(pil))
        except Exception as err:  # unreadable, not an image, truncated, ...
            if self.on_error == 'raise':
                raise OSError(f'cannot read image file {path}: {err}') from err
            self.num_skipped += 1
            print_log(f'skipped unreadable image file {path} ({err}); {self.num_skipped} skipped so far '
                      'by this loader', logger='current', level=logging.WARNING)
            return None
        _set_image(results, img)
        results['ori_shape'] = results['img_shape']
        return results

    def __repr__(self):
        return f'{type(self).__name__}(on_error={self.on_error!r}, lazy={self.lazy})'


def check_resize_options(interpolation, backend):
    if backend not in ('pillow', 'torch'):
        hint = (" (OpenCV's bicubic neither antialiases when shrinking nor uses PIL's kernel, which "
                'changes the gradient statistics HOG targets see)') if backend == 'cv2' else ''
        raise ValueError(f"resize backend must be 'pillow' or 'torch', got {backend!r}{hint}")
    if interpolation not in PIL_FILTERS:
        raise ValueError(f'interpolation must be one of {sorted(PIL_FILTERS)}, got {interpolation!r}')


def resize_image(img, size_hw, interpolation='bicubic', backend='pillow'):
    """Resize an (H, W[, C]) uint8 image to ``size_hw`` with PIL's semantics (torchvision's on PIL
    images): bilinear/bicubic filters widen with the shrink factor (antialiased), bicubic uses
    a = -0.5. ``backend='pillow'`` is PIL itself; ``'torch'`` is ``F.interpolate(antialias=True)``,
    the same filters in torch (within a grey level of PIL)."""
    out_h, out_w = size_hw
    if backend == 'pillow':
        return np.asarray(Image.fromarray(img).resize((out_w, out_h), PIL_FILTERS[interpolation]))
    x = torch.from_numpy(np.ascontiguousarray(img))
    x = (x[..., None] if x.ndim == 2 else x).permute(2, 0, 1)[None]  # uint8: torch's PIL-like path
    mode = TORCH_MODES[interpolation]
    x = F.interpolate(x, size=(out_h, out_w), mode=mode, antialias=mode != 'nearest-exact')
    out = x[0].permute(1, 2, 0).numpy()
    return out[..., 0] if img.ndim == 2 else out


def draft_scale(crop_hw, size_hw):
    """The largest JPEG DCT scale (1, 2, 4 or 8) that still leaves at least ``size_hw`` pixels
    over a crop of ``crop_hw`` original pixels."""
    return max(s for s in (8, 4, 2, 1) if s == 1 or (crop_hw[0] >= s * size_hw[0] and crop_hw[1] >= s * size_hw[1]))


def decode_resized_crop(pil, box, size_hw, interpolation='bicubic', backend='pillow', path=None):
    """Decode an opened (not yet loaded) PIL image and resize its crop ``box`` = (top, left, h, w)
    (original pixels) to ``size_hw``, as ``resize_image(decoded[top:top+h, left:left+w])``.

    A JPEG whose crop is at least 2x the output on both sides is decoded at 1/2, 1/4 or 1/8 scale
    by libjpeg (Pillow's ``draft``: the IDCT averages each s x s block), never below the output
    resolution over the crop. The box is then mapped to the reduced image's coordinates (pixel j
    covers original pixels [j s, (j + 1) s)) and resized from there with PIL's filter over that
    fractional box, so the crop covers the same part of the picture. Without draft the result is
    exactly the full-decode one.
    """
    top, left, h, w = box
    full_w, full_h = pil.size
    scale = draft_scale((h, w), size_hw) if pil.format == 'JPEG' else 1
    try:
        if scale > 1:
            pil.draft('RGB', (-(-full_w // scale), -(-full_h // scale)))
        img = decode_rgb(pil)
    except Exception as err:
        raise OSError(f'cannot read image file {path}: {err}') from err
    if img.size == (full_w, full_h):
        return resize_image(np.asarray(img)[top:top + h, left:left + w], size_hw, interpolation, backend)
    scale = round(full_w / img.width)  # the DCT scale, 2, 4 or 8 (reduced sides are rounded up)
    # the box in reduced pixels, and the whole reduced pixels around it
    x0, y0, x1, y1 = left / scale, top / scale, (left + w) / scale, (top + h) / scale
    ix0, iy0 = int(x0), int(y0)
    ix1, iy1 = min(int(np.ceil(x1)), img.width), min(int(np.ceil(y1)), img.height)
    region = img.crop((ix0, iy0, ix1, iy1))
    out_h, out_w = size_hw
    box = (x0 - ix0, y0 - iy0, min(x1, ix1) - ix0, min(y1, iy1) - iy0)
    return np.asarray(region.resize((out_w, out_h), PIL_FILTERS[interpolation], box=box))


def sample_resized_crop(height, width, scale, ratio, rng=np.random, attempts=10):
    """Sample a crop box like torchvision's ``RandomResizedCrop.get_params``.

    Up to ``attempts`` times: area fraction ~ U(scale), log aspect (w/h) ~ U(log ratio); accept if
    the box fits. Otherwise fall back to the largest centred box whose aspect is clamped to ``ratio``.

    Returns:
        (top, left, crop_height, crop_width) ints.
    """
    area = height * width
    log_ratio = np.log(ratio)
    for _ in range(attempts):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = np.exp(rng.uniform(log_ratio[0], log_ratio[1]))
        w = int(round(np.sqrt(target_area * aspect)))
        h = int(round(np.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.randint(0, height - h + 1))
            left = int(rng.randint(0, width - w + 1))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        w, h = int(round(height * max(ratio))), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


@TRANSFORMS.register_module()
class RandomResizedCrop(BaseTransform):
    """Random area/aspect crop resized to ``size`` (int or (h, w)), as torchvision does it on PIL
    images: the same box distribution, then the crop resized by :func:`resize_image` (antialiased
    when shrinking; ``backend='pillow'`` or ``'torch'``). After ``LoadImage(lazy=True)`` it decodes
    the image itself, at reduced scale when the crop allows (:func:`decode_resized_crop`).
    Sets ``img``, ``img_shape`` and ``crop_bbox`` (x1, y1, x2, y2) in the input image.
    """

    def __init__(self, size, scale=(0.08, 1.0), ratio=(3. / 4., 4. / 3.), interpolation='bicubic',
                 backend='pillow'):
        if not (0 < scale[0] <= scale[1] <= 1) or not (0 < ratio[0] <= ratio[1]):
            raise ValueError(f'RandomResizedCrop needs 0 < scale[0] <= scale[1] <= 1 and 0 < ratio[0] <= ratio[1], '
                             f'got scale={scale}, ratio={ratio}')
        check_resize_options(interpolation, backend)
        self.size = _size_hw(size)
        self.scale, self.ratio = tuple(scale), tuple(ratio)
        self.interpolation, self.backend = interpolation, backend

    def transform(self, results):
        img = results['img']
        height, width = results['img_shape'] if isinstance(img, Image.Image) else img.shape[:2]
        top, left, h, w = sample_resized_crop(height, width, self.scale, self.ratio)
        if isinstance(img, Image.Image):  # LoadImage(lazy=True): decode only what the crop needs
            out = decode_resized_crop(img, (top, left, h, w), self.size, self.interpolation, self.backend,
                                      results.get('img_path'))
        else:
            out = resize_image(img[top:top + h, left:left + w], self.size, self.interpolation, self.backend)
        _set_image(results, out)
        results['crop_bbox'] = (left, top, left + w, top + h)
        return results

    def __repr__(self):
        return (f'{type(self).__name__}(size={self.size}, scale={self.scale}, ratio={self.ratio}, '
                f'interpolation={self.interpolation!r}, backend={self.backend!r})')


@TRANSFORMS.register_module()
class Resize(BaseTransform):
    """Resize ``img`` to a fixed ``size`` (int or (h, w)), ignoring the aspect ratio (e.g. 28 -> 224),
    with :func:`resize_image` (PIL's filters; ``backend='pillow'`` or ``'torch'``)."""

    def __init__(self, size, interpolation='bicubic', backend='pillow'):
        check_resize_options(interpolation, backend)
        self.size = _size_hw(size)
        self.interpolation, self.backend = interpolation, backend

    def transform(self, results):
        img = results['img']
        out_h, out_w = self.size
        results['scale_factor'] = (out_w / img.shape[1], out_h / img.shape[0])
        _set_image(results, resize_image(img, self.size, self.interpolation, self.backend))
        return results

    def __repr__(self):
        return (f'{type(self).__name__}(size={self.size}, interpolation={self.interpolation!r}, '
                f'backend={self.backend!r})')


@TRANSFORMS.register_module()
class TimmTransform(BaseTransform):
    """Apply ``timm.data.create_transform(**kwargs)`` to a PIL image made from ``img`` (RGB uint8).

    With timm's defaults (``normalize=True``) the output ``img`` is a (3, H, W) float tensor already
    normalised with ``mean``/``std``: RandAugment, random erasing etc. are timm's own.
    """

    def __init__(self, **kwargs):
        from timm.data import create_transform
        self.kwargs = kwargs
        self.timm_transform = create_transform(**kwargs)

    def transform(self, results):
        img = results['img']
        if not (isinstance(img, np.ndarray) and img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3):
            raise TypeError(f'TimmTransform needs an (H, W, 3) uint8 RGB numpy image, got '
                            f'{type(img).__name__} {getattr(img, "dtype", "")} {getattr(img, "shape", "")}')
        _set_image(results, self.timm_transform(Image.fromarray(img)))
        return results

    def __repr__(self):
        return f'{type(self).__name__}({self.kwargs})'


@TRANSFORMS.register_module()
class PackInputs(BaseTransform):
    """Pack ``inputs`` and ``data_samples`` for classification and pretraining.

    ``inputs``: (C, H, W) tensor (uint8 from a numpy image, or the tensor ``img`` as it is).
    ``data_samples``: ``BaseDataElement`` with ``gt_label`` (shape (1,) int64) if present, and as
    metainfo the present ``meta_keys`` and ``mask`` (numpy) if present: metainfo stays on the
    host when the data preprocessor moves the batch, so the model reads masks without a device sync.
    """

    def __init__(self, meta_keys=('sample_idx', 'img_path', 'ori_shape', 'img_shape', 'flip', 'flip_direction')):
        self.meta_keys = tuple(meta_keys)

    def transform(self, results):
        img = results['img']
        if isinstance(img, np.ndarray):
            if img.ndim == 2:
                img = img[:, :, None]
            inputs = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
        elif isinstance(img, torch.Tensor) and img.ndim == 3:
            inputs = img
        else:
            raise TypeError(f'PackInputs needs an (H, W, C) numpy or (C, H, W) tensor img, got {type(img).__name__}')
        sample = BaseDataElement(metainfo={k: results[k] for k in self.meta_keys if k in results})
        if 'gt_label' in results:
            sample.gt_label = torch.as_tensor(results['gt_label'], dtype=torch.long).reshape(1)
        if 'mask' in results:
            sample.set_metainfo(dict(mask=np.asarray(results['mask'])))  # deep-copied: numpy is cheap
        return dict(inputs=inputs, data_samples=sample)

    def __repr__(self):
        return f'{type(self).__name__}(meta_keys={self.meta_keys})'
