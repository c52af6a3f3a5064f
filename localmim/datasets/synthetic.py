"""A generated stand-in for Fashion-MNIST, for machines without the Debian package.

Grey blobs (ellipses) with random labels, written as the same gz idx files, so every dataset,
config and tool works unchanged on it. Only meant for smoke runs: the labels carry no signal.
"""
import gzip
import os
import os.path as osp
import struct

import numpy as np

IDX_TYPE_CODES = {np.dtype('uint8'): 0x08, np.dtype('int8'): 0x09, np.dtype('int16'): 0x0B,
                  np.dtype('int32'): 0x0C, np.dtype('float32'): 0x0D, np.dtype('float64'): 0x0E}


def idx_bytes(array):
    """The idx encoding of ``array``: magic (0, 0, type, ndim), big-endian sizes, big-endian data."""
    header = struct.pack('>BBBB', 0, 0, IDX_TYPE_CODES[array.dtype], array.ndim)
    header += b''.join(struct.pack('>I', s) for s in array.shape)
    return header + array.astype(array.dtype.newbyteorder('>')).tobytes()


def write_idx(path, array):
    """Write ``array`` as an idx file (gzip-compressed when ``path`` ends in .gz)."""
    opener = gzip.open if path.endswith('.gz') else open
    with opener(path, 'wb') as f:
        f.write(idx_bytes(array))


def synthetic_items(num, seed):
    """(num, 28, 28) uint8 blobs and (num,) uint8 labels, deterministic by ``seed``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:28, :28]
    images = np.zeros((num, 28, 28), np.uint8)
    for i in range(num):
        cy, cx, ry, rx = rng.uniform(10, 18), rng.uniform(10, 18), rng.uniform(4, 12), rng.uniform(4, 12)
        inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        images[i][inside] = rng.integers(80, 256)
    return images, rng.integers(0, 10, size=num).astype(np.uint8)


def write_fashion_mnist_root(root, splits):
    """Write ``{'train': (images, labels), 'test': (...)}`` as Fashion-MNIST's four gz idx files."""
    os.makedirs(root, exist_ok=True)
    for split, (images, labels) in splits.items():
        prefix = 'train' if split == 'train' else 't10k'
        write_idx(osp.join(root, f'{prefix}-images-idx3-ubyte.gz'), images)
        write_idx(osp.join(root, f'{prefix}-labels-idx1-ubyte.gz'), labels)


def write_synthetic_fashion_mnist(root, num_train=6000, num_test=1000, seed=0):
    """Generate a synthetic Fashion-MNIST root at ``root``; returns ``root``."""
    write_fashion_mnist_root(root, {'train': synthetic_items(num_train, seed),
                                    'test': synthetic_items(num_test, seed + 1)})
    return root
