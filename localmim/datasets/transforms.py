"""Transforms on mmengine result dicts whose ``img`` is an (H, W, 3) uint8 numpy array in RGB order.

Pretraining pipeline of the release: ``LoadImage`` -> ``RandomResizedCrop(224, scale=(0.2, 1.0))``
-> ``dict(type='RandomFlip', prob=0.5)`` (mmcv's, horizontal) -> ``PackInputs``. The ImageNet
pretraining configs run the same augmentation ~2x faster per loader process: ``LoadImage(lazy=True)``
(simplejpeg, decoding down to the crop's last row, at 1/2-1/8 scale when the crop allows) ->
``RandomResizedCrop(..., backend='torch')`` -> ``RandomHorizontalFlip`` -> ``PackInputs``.
Fine-tuning: ``LoadImage`` -> ``TimmTransform(input_size=224, is_training=True, auto_augment=..., re_prob=...)``
-> ``PackInputs`` (timm's transform already normalises: the data preprocessor must not normalise again).
"""
import copy
import io
import logging
import math
import warnings
from typing import NamedTuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from mmcv.transforms import BaseTransform
from mmengine.fileio import get as mmengine_get
from mmengine.logging import print_log
from mmengine.structures import BaseDataElement
from PIL import Image

from localmim.registry import TRANSFORMS

try:  # libjpeg-turbo through a thin wrapper: the same pixels as Pillow's decoder, ~25% faster
    import simplejpeg
except ImportError:  # optional: Pillow decodes instead
    simplejpeg = None

__all__ = ['LoadImage', 'RandomResizedCrop', 'RandomHorizontalFlip', 'Resize', 'TimmTransform', 'PackInputs',
           'EncodedJpeg', 'sample_resized_crop', 'resize_image', 'decode_jpeg', 'decode_resized_crop']

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


class EncodedJpeg(NamedTuple):
    """A JPEG file's bytes and its size, read by ``LoadImage(lazy=True)`` and decoded with simplejpeg
    by :class:`RandomResizedCrop` (:func:`decode_resized_crop`)."""
    data: bytes
    height: int
    width: int


def simplejpeg_header(data):
    """(height, width) of a baseline/progressive YCbCr or grey JPEG that simplejpeg decodes to RGB
    as Pillow does; None for anything else (not a JPEG, CMYK, unreadable header, no simplejpeg)."""
    if simplejpeg is None or data[:2] != b'\xff\xd8':
        return None
    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError:
        return None
    return (height, width) if colorspace in ('YCbCr', 'Gray') else None


def read_bytes(path, backend_args=None):
    """A file's bytes: a plain read for local paths, mmengine's file backends otherwise."""
    if backend_args is None and isinstance(path, str) and '://' not in path:
        with open(path, 'rb') as f:
            return f.read()
    return mmengine_get(path, backend_args=backend_args)


def baseline_frame_header(data):
    """(offset of the height field, MCU height in pixels) of the frame header of a baseline or extended
    sequential Huffman JPEG (SOF0/SOF1); None for any other (progressive, lossless, arithmetic)."""
    i, end = 2, len(data) - 4
    try:
        while i < end and data[i] == 0xFF:
            marker = data[i + 1]
            if marker == 0xFF:  # fill byte
                i += 1
                continue
            if marker in (0xC0, 0xC1):
                num_components = data[i + 9]
                v_max = max(data[i + 11 + 3 * k] & 0x0F for k in range(num_components))
                return (i + 5, 8 * v_max) if 1 <= v_max <= 4 else None
            if marker == 0xDA or (0xC2 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC)):
                return None
            i += 2 + int.from_bytes(data[i + 2:i + 4], 'big')
    except (IndexError, ValueError):  # a cut-off header: decoded (and refused) as it is
        return None
    return None


def decode_jpeg(data, scale=1, rows=None):
    """simplejpeg's (H, W, 3) uint8 RGB decode of a JPEG (see :func:`simplejpeg_header`), at 1/``scale``
    (2, 4 or 8: libjpeg's DCT scaling, ceil(H / scale) x ceil(W / scale) pixels, as Pillow's ``draft``);
    None when simplejpeg refuses the data (e.g. truncated), for Pillow to decode or name the error.

    ``rows`` (full scale only): only the first ``rows`` rows are needed. A complete (EOI-terminated)
    sequential JPEG is then decoded down to one MCU row past them, by lowering the height in its
    frame header: libjpeg stops there, and the rows kept (whose chroma upsampling context lies in
    the decoded MCU rows) are exactly those of the full decode. The array may have fewer rows than
    the image.
    """
    try:
        if scale == 1:
            header = baseline_frame_header(data) if rows is not None and data.endswith(b'\xff\xd9') else None
            if header is not None:
                offset, mcu_height = header
                height = int.from_bytes(data[offset:offset + 2], 'big')
                decoded_rows = -(-(rows + mcu_height) // mcu_height) * mcu_height
                if 0 < decoded_rows < height:
                    # libjpeg then warns of the entropy data left over: not strict (Pillow ignores
                    # libjpeg warnings too; truncated files lack the EOI and take the strict path)
                    data = data[:offset] + decoded_rows.to_bytes(2, 'big') + data[offset + 2:]
                    return simplejpeg.decode_jpeg(data, 'rgb', strict=False)
            return simplejpeg.decode_jpeg(data, 'rgb')
        height, width, _, _ = simplejpeg.decode_jpeg_header(data)
        # the smallest decode of a factor >= scale that keeps ceil(side / scale) pixels: 1 / scale exactly
        return simplejpeg.decode_jpeg(data, 'rgb', min_factor=scale, min_height=-(-height // scale),
                                      min_width=-(-width // scale))
    except ValueError:
        return None


DECODERS = ('auto', 'simplejpeg', 'pillow')


@TRANSFORMS.register_module()
class LoadImage(BaseTransform):
    """Read ``results['img_path']`` into ``img`` ((H, W, 3) uint8, RGB): JPEGs with simplejpeg when
    installed (libjpeg-turbo, the same pixels as Pillow), other files with Pillow.

    Both refuse truncated files (unlike OpenCV, which silently pads them), so corrupt and
    truncated images are both caught.

    Args:
        on_error: ``'raise'``: an ``OSError`` naming the file; ``'skip'``: a warning, the count
            ``num_skipped`` grows and the transform returns None, so that a training-mode
            mmengine ``BaseDataset`` returns another sample instead.
        backend_args: mmengine file backend arguments.
        lazy: only read the file and its header: ``img`` is an :class:`EncodedJpeg` (JPEGs
            simplejpeg decodes) or the opened PIL image (anything else), ``img_shape`` its size;
            :class:`RandomResizedCrop` (which must come next) decodes it, a JPEG at 1/2, 1/4 or 1/8
            scale when the crop allows it (see :func:`decode_resized_crop`). Needs
            ``on_error='raise'`` (a broken file raises at the crop, naming it).
        decoder: JPEG decoder: ``'simplejpeg'`` (libjpeg-turbo; the same pixels as Pillow, ~25%
            faster), ``'pillow'``, or ``'auto'``: simplejpeg when installed, else Pillow (with a
            warning when lazy). Files simplejpeg cannot take (CMYK, broken, not JPEG) go to Pillow.
    """

    def __init__(self, on_error='raise', backend_args=None, lazy=False, decoder='auto'):
        if on_error not in ('raise', 'skip'):
            raise ValueError(f"LoadImage on_error must be 'raise' or 'skip', got {on_error!r}")
        if lazy and on_error != 'raise':
            raise ValueError("LoadImage(lazy=True) decodes in RandomResizedCrop and needs on_error='raise'")
        if decoder not in DECODERS:
            raise ValueError(f'LoadImage decoder must be one of {DECODERS}, got {decoder!r}')
        if decoder == 'simplejpeg' and simplejpeg is None:
            raise ImportError("LoadImage(decoder='simplejpeg') needs the simplejpeg package: pip install simplejpeg")
        if lazy and decoder == 'auto' and simplejpeg is None:
            warnings.warn('simplejpeg is not installed: LoadImage(lazy=True) decodes JPEGs with Pillow, about '
                          '1.3x slower (pip install simplejpeg)', UserWarning, stacklevel=2)
        self.on_error = on_error
        self.backend_args = backend_args
        self.lazy = lazy
        self.decoder = decoder
        self.num_skipped = 0

    def transform(self, results):
        path = results['img_path']
        try:
            data = read_bytes(path, self.backend_args)
            shape = simplejpeg_header(data) if self.decoder != 'pillow' else None
            if self.lazy:
                img = EncodedJpeg(data, *shape) if shape is not None else Image.open(io.BytesIO(data))
            else:
                img = decode_jpeg(data) if shape is not None else None
                if img is None:
                    with Image.open(io.BytesIO(data)) as pil:
                        img = np.asarray(decode_rgb(pil))
        except Exception as err:  # unreadable, not an image, truncated, ...
            if self.on_error == 'raise' or self.lazy:
                raise OSError(f'cannot read image file {path}: {err}') from err
            self.num_skipped += 1
            print_log(f'skipped unreadable image file {path} ({err}); {self.num_skipped} skipped so far '
                      'by this loader', logger='current', level=logging.WARNING)
            return None
        if self.lazy:
            results['img'] = img
            results['img_shape'] = results['ori_shape'] = shape or (img.height, img.width)
            return results
        _set_image(results, img)
        results['ori_shape'] = results['img_shape']
        return results

    def __repr__(self):
        return f'{type(self).__name__}(on_error={self.on_error!r}, lazy={self.lazy}, decoder={self.decoder!r})'


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
    x = torch.from_numpy(img if img.flags.writeable else img.copy())  # a crop view: no copy
    x = (x[..., None] if x.ndim == 2 else x).permute(2, 0, 1)[None]
    # uint8 channels-last: torch's SIMD PIL-like kernel at its fastest (a crop view is copied once)
    x = x.contiguous(memory_format=torch.channels_last)
    mode = TORCH_MODES[interpolation]
    x = F.interpolate(x, size=(out_h, out_w), mode=mode, antialias=mode != 'nearest-exact')
    out = x[0].permute(1, 2, 0).numpy()  # channels-last out: (H, W, C) contiguous
    return out[..., 0] if img.ndim == 2 else out


def draft_scale(crop_hw, size_hw):
    """The largest JPEG DCT scale (1, 2, 4 or 8) that still leaves at least ``size_hw`` pixels
    over a crop of ``crop_hw`` original pixels."""
    return max(s for s in (8, 4, 2, 1) if s == 1 or (crop_hw[0] >= s * size_hw[0] and crop_hw[1] >= s * size_hw[1]))


def decode_resized_crop(img, box, size_hw, interpolation='bicubic', backend='pillow', path=None):
    """Decode ``img`` of ``LoadImage(lazy=True)`` (an :class:`EncodedJpeg`, or an opened, not yet
    loaded PIL image) and resize its crop ``box`` = (top, left, h, w) (original pixels) to
    ``size_hw``, as ``resize_image(decoded[top:top+h, left:left+w])``.

    A JPEG whose crop is at least 2x the output on both sides is decoded at 1/2, 1/4 or 1/8 scale
    by libjpeg (simplejpeg's ``min_factor`` or Pillow's ``draft``: the IDCT averages each s x s
    block), never below the output resolution over the crop. The box is then mapped to the
    reduced image's coordinates (pixel j covers original pixels [j s, (j + 1) s)) and resized from
    there with PIL's filter over that fractional box (whatever ``backend``), so the crop covers the
    same part of the picture. Without DCT scaling the result is exactly the full-decode one.
    """
    top, left, h, w = box
    if isinstance(img, EncodedJpeg):
        scale = draft_scale((h, w), size_hw)
        decoded = decode_jpeg(img.data, scale, rows=top + h)  # rows: only those down to the crop's bottom
        if decoded is not None:
            if scale == 1:
                return resize_image(decoded[top:top + h, left:left + w], size_hw, interpolation, backend)
            return resize_reduced(Image.fromarray(decoded), img.width, box, size_hw, interpolation)
        img = Image.open(io.BytesIO(img.data))  # refused by simplejpeg (e.g. truncated): Pillow decodes it
    full_w, full_h = img.size
    scale = draft_scale((h, w), size_hw) if img.format == 'JPEG' else 1
    try:
        if scale > 1:
            img.draft('RGB', (full_w // scale, full_h // scale))  # Pillow: scale <= size // request
        decoded = decode_rgb(img)
    except Exception as err:
        raise OSError(f'cannot read image file {path}: {err}') from err
    if decoded.size == (full_w, full_h):
        return resize_image(np.asarray(decoded)[top:top + h, left:left + w], size_hw, interpolation, backend)
    return resize_reduced(decoded, full_w, box, size_hw, interpolation)


def resize_reduced(reduced, full_width, box, size_hw, interpolation):
    """PIL's resize of the crop ``box`` (original pixels) of a JPEG decoded at 1/2, 1/4 or 1/8 scale
    (``reduced``, a PIL image) over the fractional box it covers there."""
    top, left, h, w = box
    scale = round(full_width / reduced.width)  # the DCT scale, 2, 4 or 8 (reduced sides are rounded up)
    # the box in reduced pixels, and the whole reduced pixels around it
    x0, y0, x1, y1 = left / scale, top / scale, (left + w) / scale, (top + h) / scale
    ix0, iy0 = int(x0), int(y0)
    ix1, iy1 = min(int(np.ceil(x1)), reduced.width), min(int(np.ceil(y1)), reduced.height)
    region = reduced.crop((ix0, iy0, ix1, iy1))
    out_h, out_w = size_hw
    fractional = (x0 - ix0, y0 - iy0, min(x1, ix1) - ix0, min(y1, iy1) - iy0)
    return np.asarray(region.resize((out_w, out_h), PIL_FILTERS[interpolation], box=fractional))


def sample_resized_crop(height, width, scale, ratio, rng=np.random, attempts=10):
    """Sample a crop box like torchvision's ``RandomResizedCrop.get_params``.

    Up to ``attempts`` times: area fraction ~ U(scale), log aspect (w/h) ~ U(log ratio); accept if
    the box fits. Otherwise fall back to the largest centred box whose aspect is clamped to ``ratio``.

    Returns:
        (top, left, crop_height, crop_width) ints.
    """
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(attempts):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_ratio[0], log_ratio[1]))
        w = round(math.sqrt(target_area * aspect))
        h = round(math.sqrt(target_area / aspect))
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
    the image itself (an :class:`EncodedJpeg` or a PIL image), only down to the crop's last row and
    at reduced scale when the crop allows (:func:`decode_resized_crop`).
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
        height, width = results['img_shape'] if isinstance(img, (EncodedJpeg, Image.Image)) else img.shape[:2]
        top, left, h, w = sample_resized_crop(height, width, self.scale, self.ratio)
        if isinstance(img, (EncodedJpeg, Image.Image)):  # LoadImage(lazy=True): decode what the crop needs
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
class RandomHorizontalFlip(BaseTransform):
    """Flip ``img`` (H, W[, C]) left-right with probability ``prob``; sets ``flip`` and
    ``flip_direction`` (``'horizontal'`` or None) as mmcv's ``RandomFlip(direction='horizontal')``,
    from the same single draw (flip iff ``np.random.random_sample() < prob``), without its
    box/keypoint/segmentation handling. A contiguous image is flipped by OpenCV's SIMD copy;
    any other becomes a flipped view, copied once by :class:`PackInputs`.
    """

    def __init__(self, prob=0.5):
        if not 0 <= prob <= 1:
            raise ValueError(f'RandomHorizontalFlip prob must be in [0, 1], got {prob}')
        self.prob = prob

    def transform(self, results):
        flip = bool(np.random.random_sample() < self.prob)
        results['flip'], results['flip_direction'] = flip, 'horizontal' if flip else None
        if flip:
            results['img'] = flip_width(results['img'])
        return results

    def __repr__(self):
        return f'{type(self).__name__}(prob={self.prob})'


def flip_width(img):
    """``img[:, ::-1]`` of an (H, W[, C]) numpy image: a contiguous copy (OpenCV) when ``img`` is
    contiguous uint8, a view otherwise."""
    if img.dtype == np.uint8 and img.flags.c_contiguous and img.size and (img.ndim == 2 or img.shape[2] <= 4):
        return cv2.flip(img, 1).reshape(img.shape)  # reshape: OpenCV drops a trailing 1-channel axis
    return img[:, ::-1]


def hwc_to_chw(img):
    """(H, W, C) numpy -> (C, H, W) contiguous numpy: a channel-first buffer seen as (H, W, C) as it is,
    a contiguous uint8 image by OpenCV's SIMD channel split (~5x numpy's transposing copy)."""
    chw = img.transpose(2, 0, 1)
    if chw.flags.c_contiguous:
        return chw
    if img.dtype == np.uint8 and img.flags.c_contiguous and 1 < img.shape[2] <= 4:
        out = np.empty(chw.shape, np.uint8)
        planes = cv2.split(img, list(out))
        if all(p.ctypes.data == o.ctypes.data for p, o in zip(planes, out)):  # written in place
            return out
        return np.stack(planes)
    return np.ascontiguousarray(chw)


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


IMMUTABLE = (int, float, str, bool, type(None), tuple)  # tuples of numbers and strings, as meta keys have


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
            inputs = torch.from_numpy(hwc_to_chw(img[:, :, None] if img.ndim == 2 else img))
        elif isinstance(img, torch.Tensor) and img.ndim == 3:
            inputs = img
        else:
            raise TypeError(f'PackInputs needs an (H, W, C) numpy or (C, H, W) tensor img, got {type(img).__name__}')
        # as BaseDataElement(metainfo=...), but without deep copies of immutable values (~20 us)
        sample = BaseDataElement()
        for key in self.meta_keys:
            if key in results:
                value = results[key]
                value = value if isinstance(value, IMMUTABLE) else copy.deepcopy(value)
                sample.set_field(value, key, field_type='metainfo')
        if 'mask' in results:
            sample.set_field(np.array(results['mask']), 'mask', field_type='metainfo')
        if 'gt_label' in results:
            sample.gt_label = torch.as_tensor(results['gt_label'], dtype=torch.long).reshape(1)
        return dict(inputs=inputs, data_samples=sample)

    def __repr__(self):
        return f'{type(self).__name__}(meta_keys={self.meta_keys})'
