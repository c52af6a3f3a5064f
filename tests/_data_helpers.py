"""Test helpers: writing idx files by hand, and a tiny Fashion-MNIST root."""
import gzip
import os
import os.path as osp
import struct

import numpy as np

from localmim.datasets.fashion_mnist import DEFAULT_FASHION_MNIST_ROOT, load_fashion_mnist

IDX_TYPE_CODES = {np.dtype('uint8'): 0x08, np.dtype('int8'): 0x09, np.dtype('int16'): 0x0B,
                  np.dtype('int32'): 0x0C, np.dtype('float32'): 0x0D, np.dtype('float64'): 0x0E}


def idx_bytes(array):
    """The idx encoding of ``array``, written field by field with struct."""
    header = struct.pack('>BBBB', 0, 0, IDX_TYPE_CODES[array.dtype], array.ndim)
    header += b''.join(struct.pack('>I', s) for s in array.shape)
    return header + array.astype(array.dtype.newbyteorder('>')).tobytes()


def write_idx(path, array):
    data = idx_bytes(array)
    if path.endswith('.gz'):
        with gzip.open(path, 'wb') as f:
            f.write(data)
    else:
        with open(path, 'wb') as f:
            f.write(data)


def real_fashion_mnist_present():
    return osp.isdir(DEFAULT_FASHION_MNIST_ROOT) and any(
        n.startswith('train-images') for n in os.listdir(DEFAULT_FASHION_MNIST_ROOT))


def synthetic_items(num, seed):
    """(num, 28, 28) uint8 blobs (ellipses and bars) and labels, when the real data is absent."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:28, :28]
    images = np.zeros((num, 28, 28), np.uint8)
    for i in range(num):
        cy, cx, ry, rx = rng.uniform(10, 18), rng.uniform(10, 18), rng.uniform(4, 12), rng.uniform(4, 12)
        inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        images[i][inside] = rng.integers(80, 256)
    return images, rng.integers(0, 10, size=num).astype(np.uint8)


def write_tiny_fashion_mnist(root, num_train=64, num_test=32):
    """Write a small Fashion-MNIST root (gz idx files): the first real images if installed, else blobs.

    Returns {split: (images, labels)} as written.
    """
    os.makedirs(root, exist_ok=True)
    written = {}
    for split, prefix, num in (('train', 'train', num_train), ('test', 't10k', num_test)):
        if real_fashion_mnist_present():
            images, labels = load_fashion_mnist(DEFAULT_FASHION_MNIST_ROOT, split)
            images, labels = images[:num], labels[:num].astype(np.uint8)
        else:
            images, labels = synthetic_items(num, seed=len(split))
        write_idx(osp.join(root, f'{prefix}-images-idx3-ubyte.gz'), images)
        write_idx(osp.join(root, f'{prefix}-labels-idx1-ubyte.gz'), labels)
        written[split] = (images, labels)
    return written
