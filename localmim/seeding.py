"""Seeds derived from a run's coordinates (seed, rank, iteration, epoch, sample position).

Random numbers that depend only on where a run is, not on how it got there (which process, which
loader worker, resumed or not), are what make a resumed run repeat the uninterrupted one.
"""
import random

import numpy as np
import torch

__all__ = ['mix_seed', 'seed_all']

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MUL1, _MUL2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _splitmix64(x):
    """The splitmix64 finaliser on a uint64 array (a bijection that mixes every bit)."""
    with np.errstate(over='ignore'):
        x = x + _GOLDEN
        x = (x ^ (x >> np.uint64(30))) * _MUL1
        x = (x ^ (x >> np.uint64(27))) * _MUL2
    return x ^ (x >> np.uint64(31))


def mix_seed(*values):
    """A well-mixed 32-bit seed from integers; the last one may be an array (vectorised).

    ``mix_seed(seed, epoch, positions)`` -> uint32 array with one seed per position.
    """
    mixed = np.zeros((), dtype=np.uint64)
    for value in values:
        mixed = _splitmix64(mixed ^ np.asarray(value, dtype=np.int64).astype(np.uint64))
    return mixed >> np.uint64(32)


def seed_all(seed):
    """Seed Python's ``random``, numpy's global generator and torch (CPU and CUDA)."""
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
