"""Test helpers: writing idx files by hand, and a tiny Fashion-MNIST root."""
import os
import os.path as osp

import numpy as np

from localmim.datasets.fashion_mnist import DEFAULT_FASHION_MNIST_ROOT, load_fashion_mnist
from localmim.datasets.synthetic import idx_bytes, synthetic_items, write_idx  # noqa: F401


def real_fashion_mnist_present():
    return osp.isdir(DEFAULT_FASHION_MNIST_ROOT) and any(
        n.startswith('train-images') for n in os.listdir(DEFAULT_FASHION_MNIST_ROOT))


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
