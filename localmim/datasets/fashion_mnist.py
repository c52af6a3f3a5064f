"""Fashion-MNIST: reader of the idx files and the ``localmim.FashionMNIST`` dataset.

The idx format (used by MNIST and Fashion-MNIST) is: two zero bytes, one byte giving the element
type (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64), one byte giving
the number of dimensions ``n``, then ``n`` big-endian uint32 sizes, then the values in C order,
big-endian. Files may be gzip-compressed (``.gz``).
"""
import gzip
import os.path as osp

import numpy as np
from mmengine.dataset import BaseDataset

from localmim.registry import DATASETS

from .samplers import SeededItems

__all__ = ['FASHION_MNIST_CLASSES', 'DEFAULT_FASHION_MNIST_ROOT', 'read_idx', 'find_fashion_mnist_file',
           'load_fashion_mnist', 'FashionMNIST']

FASHION_MNIST_CLASSES = ('T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt',
                         'Sneaker', 'Bag', 'Ankle boot')
DEFAULT_FASHION_MNIST_ROOT = '/usr/share/datasets/fashion-mnist'

# idx element-type code -> numpy dtype (big-endian)
_IDX_DTYPES = {0x08: np.dtype('u1'), 0x09: np.dtype('i1'), 0x0B: np.dtype('>i2'),
               0x0C: np.dtype('>i4'), 0x0D: np.dtype('>f4'), 0x0E: np.dtype('>f8')}
# split -> file stem of (images, labels)
_SPLIT_STEMS = {'train': ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte'),
                'test': ('t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte')}


def read_idx(path):
    """Read one idx file (raw or ``.gz``) into a numpy array in native byte order."""
    opener = gzip.open if path.endswith('.gz') else open
    with opener(path, 'rb') as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f'{path}: not an idx file (header bytes {data[:4]!r})')
    dtype, ndim = _IDX_DTYPES[data[2]], data[3]
    header_len = 4 + 4 * ndim
    shape = tuple(int(s) for s in np.frombuffer(data, dtype='>u4', count=ndim, offset=4))
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header_len != expected:
        raise ValueError(f'{path}: header announces shape {shape} ({expected} bytes of data) '
                         f'but the file holds {len(data) - header_len} bytes after the header')
    values = np.frombuffer(data, dtype=dtype, offset=header_len).reshape(shape)
    return values.astype(dtype.newbyteorder('='))


def find_fashion_mnist_file(root, stem):
    """Path of ``root/stem`` or ``root/stem.gz``; a clear error naming both if neither exists."""
    candidates = [osp.join(root, stem + '.gz'), osp.join(root, stem)]
    for path in candidates:
        if osp.isfile(path):
            return path
    if not osp.isdir(root):
        raise FileNotFoundError(
            f'Fashion-MNIST root {root!r} does not exist. Install the Debian package '
            f'dataset-fashion-mnist (files under {DEFAULT_FASHION_MNIST_ROOT}) or pass the folder '
            'holding the idx files as data_root / --data-root.')
    raise FileNotFoundError(f'Fashion-MNIST file missing: neither {candidates[0]} nor {candidates[1]} exists')


def load_fashion_mnist(root=DEFAULT_FASHION_MNIST_ROOT, split='train'):
    """Load one split.

    Returns:
        images: (N, 28, 28) uint8, labels: (N,) int64 in [0, 10).
    """
    if split not in _SPLIT_STEMS:
        raise ValueError(f"Fashion-MNIST split must be one of {sorted(_SPLIT_STEMS)}, got {split!r}")
    image_path, label_path = (find_fashion_mnist_file(root, stem) for stem in _SPLIT_STEMS[split])
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f'{image_path}: expected uint8 images of shape (N, H, W), got {images.dtype} {images.shape}')
    if labels.shape != (len(images),):
        raise ValueError(f'{label_path}: expected {len(images)} labels, got shape {labels.shape}')
    if labels.size and labels.max() >= len(FASHION_MNIST_CLASSES):
        raise ValueError(f'{label_path}: label {labels.max()} out of range [0, {len(FASHION_MNIST_CLASSES)})')
    return images, labels.astype(np.int64)


@DATASETS.register_module()
class FashionMNIST(SeededItems, BaseDataset):
    """Fashion-MNIST classification dataset.

    Each sample (before the pipeline) is ``dict(img=(28, 28, 3) uint8 (grey replicated), gt_label=int,
    img_shape=(28, 28), ori_shape=(28, 28), sample_idx=int)``. Resizing belongs in the pipeline.

    Args:
        data_root: folder holding the idx files (``.gz`` or raw).
        split: ``'train'`` (60000 images) or ``'test'`` (10000 images).
        num_samples: if set, keep only the first ``num_samples`` images (quick runs).
        pipeline, test_mode, lazy_init, max_refetch: as in mmengine's ``BaseDataset``.
    """
    METAINFO = dict(classes=FASHION_MNIST_CLASSES)

    def __init__(self, data_root=DEFAULT_FASHION_MNIST_ROOT, split='train', num_samples=None, pipeline=(),
                 test_mode=False, lazy_init=False, max_refetch=1000, metainfo=None):
        if split not in _SPLIT_STEMS:
            raise ValueError(f"FashionMNIST split must be one of {sorted(_SPLIT_STEMS)}, got {split!r}")
        if num_samples is not None and num_samples <= 0:
            raise ValueError(f'FashionMNIST num_samples must be positive, got {num_samples}')
        self.split = split
        self.num_samples = num_samples
        self.images = None  # (N, 28, 28) uint8, filled by load_data_list
        super().__init__(data_root=data_root, metainfo=metainfo, pipeline=list(pipeline),
                         test_mode=test_mode, lazy_init=lazy_init, max_refetch=max_refetch,
                         serialize_data=False)

    def load_data_list(self):
        images, labels = load_fashion_mnist(self.data_root, self.split)
        if self.num_samples is not None:
            images, labels = images[:self.num_samples], labels[:self.num_samples]
        self.images = images
        return [dict(image_index=i, gt_label=int(label)) for i, label in enumerate(labels)]

    def get_data_info(self, idx):
        info = super().get_data_info(idx)
        grey = self.images[info['image_index']]
        info['img'] = np.repeat(grey[:, :, None], 3, axis=2)
        info['img_shape'] = info['ori_shape'] = grey.shape
        return info
