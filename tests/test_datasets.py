"""Fashion-MNIST idx reader and dataset, ImageNet folder dataset."""
import gzip
import os
import os.path as osp
import struct

import cv2
import numpy as np
import pytest
from PIL import Image
from mmengine.registry import DefaultScope
from _data_helpers import idx_bytes, real_fashion_mnist_present, write_idx, write_tiny_fashion_mnist

from localmim.datasets import FashionMNIST, ImageNet, PackInputs, Resize
from localmim.datasets.fashion_mnist import (DEFAULT_FASHION_MNIST_ROOT, find_fashion_mnist_file, load_fashion_mnist,
                                             read_idx)
from localmim.registry import DATASETS


def test_read_idx_hand_written_bytes(tmp_path):
    # uint8 (2, 3, 4), built byte by byte: magic 0x00000803 then three big-endian sizes
    values = bytes(range(24))
    raw = struct.pack('>I', 0x0803) + struct.pack('>III', 2, 3, 4) + values
    (tmp_path / 'a-idx3-ubyte').write_bytes(raw)
    with gzip.open(tmp_path / 'a-idx3-ubyte.gz', 'wb') as f:
        f.write(raw)
    for name in ('a-idx3-ubyte', 'a-idx3-ubyte.gz'):
        arr = read_idx(str(tmp_path / name))
        assert arr.dtype == np.uint8 and arr.shape == (2, 3, 4)
        assert arr[1, 2, 3] == 23 and arr[0, 1, 0] == 4
    # int32 big-endian, negative values: 0xFFFFFFFE = -2, 0x00000100 = 256
    raw = bytes([0, 0, 0x0C, 1]) + struct.pack('>I', 2) + bytes([0xFF, 0xFF, 0xFF, 0xFE, 0, 0, 1, 0])
    (tmp_path / 'b').write_bytes(raw)
    assert read_idx(str(tmp_path / 'b')).tolist() == [-2, 256]
    # float64 round trip through the struct-based writer
    x = np.random.default_rng(0).normal(size=(3, 5))
    write_idx(str(tmp_path / 'c.gz'), x)
    np.testing.assert_array_equal(read_idx(str(tmp_path / 'c.gz')), x)


def test_read_idx_bad_files_name_the_file(tmp_path):
    bad = tmp_path / 'bad-header'
    bad.write_bytes(b'\x01\x02\x08\x01' + bytes(8))
    with pytest.raises(ValueError, match='bad-header'):
        read_idx(str(bad))
    short = tmp_path / 'short'
    short.write_bytes(idx_bytes(np.zeros((4, 4), np.uint8))[:-3])
    with pytest.raises(ValueError, match=r'short.*\(4, 4\)'):
        read_idx(str(short))


def test_missing_root_and_missing_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='nowhere'):
        load_fashion_mnist(str(tmp_path / 'nowhere'), 'train')
    write_idx(str(tmp_path / 'train-images-idx3-ubyte.gz'), np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(FileNotFoundError, match='train-labels-idx1-ubyte'):
        load_fashion_mnist(str(tmp_path), 'train')
    with pytest.raises(ValueError, match='valid'):
        load_fashion_mnist(str(tmp_path), 'valid')


@pytest.mark.skipif(not real_fashion_mnist_present(), reason='dataset-fashion-mnist not installed')
def test_real_fashion_mnist_files():
    for split, num in (('train', 60000), ('test', 10000)):
        stem = 'train' if split == 'train' else 't10k'
        path = find_fashion_mnist_file(DEFAULT_FASHION_MNIST_ROOT, f'{stem}-images-idx3-ubyte')
        opener = gzip.open if path.endswith('.gz') else open
        with opener(path, 'rb') as f:
            header = f.read(16)
            first_pixels = np.frombuffer(f.read(28 * 28), np.uint8)
        assert struct.unpack('>IIII', header) == (0x0803, num, 28, 28)
        images, labels = load_fashion_mnist(DEFAULT_FASHION_MNIST_ROOT, split)
        assert images.shape == (num, 28, 28) and labels.shape == (num,)
        np.testing.assert_array_equal(images[0].ravel(), first_pixels)
        # Fashion-MNIST is balanced: 6000 / 1000 images per class
        assert np.bincount(labels, minlength=10).tolist() == [num // 10] * 10


def test_fashion_mnist_dataset(tmp_path):
    written = write_tiny_fashion_mnist(str(tmp_path))
    images, labels = written['test']
    ds = DATASETS.build(dict(type='localmim.FashionMNIST', data_root=str(tmp_path), split='test', num_samples=5))
    assert isinstance(ds, FashionMNIST) and len(ds) == 5
    assert ds.metainfo['classes'][0] == 'T-shirt/top' and len(ds.metainfo['classes']) == 10
    sample = ds[3]
    assert sample['img'].shape == (28, 28, 3) and sample['img'].dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(sample['img'][:, :, c], images[3])
    assert sample['gt_label'] == labels[3] and sample['img_shape'] == (28, 28)

    ds = FashionMNIST(data_root=str(tmp_path), split='train', pipeline=[Resize(56), PackInputs()])
    assert len(ds) == len(written['train'][0])
    packed = ds[7]
    expected = np.asarray(Image.fromarray(written['train'][0][7]).resize((56, 56), Image.BICUBIC))  # PIL's resize
    assert packed['inputs'].shape == (3, 56, 56)
    np.testing.assert_array_equal(packed['inputs'][1].numpy(), expected)
    assert packed['data_samples'].gt_label.tolist() == [written['train'][1][7]]

    # config-style pipeline under the localmim default scope: our Resize, mmcv's RandomFlip
    with DefaultScope.overwrite_default_scope('localmim'):
        ds = DATASETS.build(dict(type='FashionMNIST', data_root=str(tmp_path), split='train', num_samples=8, pipeline=[
            dict(type='Resize', size=40), dict(type='RandomFlip', prob=1.0), dict(type='PackInputs')]))
        packed = ds[2]
    expected = np.asarray(Image.fromarray(written['train'][0][2]).resize((40, 40), Image.BICUBIC))[:, ::-1]
    np.testing.assert_array_equal(packed['inputs'][0].numpy(), expected)
    assert packed['data_samples'].flip and packed['data_samples'].ori_shape == (28, 28)


def _write_image(path, seed):
    img = np.random.default_rng(seed).integers(0, 256, size=(20, 24, 3), dtype=np.uint8)
    cv2.imwrite(path, img)
    return img[:, :, ::-1]  # RGB


def test_imagenet_folders(tmp_path):
    root = tmp_path / 'imnet'
    for cls in ['n03', 'n01', 'n02']:  # created out of order: classes must come sorted
        os.makedirs(root / 'train' / cls)
        for k in range(2):
            _write_image(str(root / 'train' / cls / f'img{k}.JPEG'), seed=k)
    (root / 'train' / 'n02' / 'notes.txt').write_text('not an image')
    ds = ImageNet(data_root=str(root), split='train')
    assert ds.metainfo['classes'] == ('n01', 'n02', 'n03')
    infos = [ds.get_data_info(i) for i in range(len(ds))]
    assert [(osp.relpath(i['img_path'], root), i['gt_label']) for i in infos] == [
        (f'train/{cls}/img{k}.JPEG', label) for label, cls in enumerate(['n01', 'n02', 'n03']) for k in range(2)]

    ann = root / 'meta' / 'val.txt'
    os.makedirs(root / 'val')
    os.makedirs(ann.parent)
    _write_image(str(root / 'val' / 'v1.png'), seed=5)
    ann.write_text('v1.png 2\n\nv1.png 0\n')
    ds = ImageNet(data_root=str(root), split='val', ann_file='meta/val.txt', classes=['a', 'b', 'c'])
    assert [(osp.basename(ds.get_data_info(i)['img_path']), ds.get_data_info(i)['gt_label'])
            for i in range(len(ds))] == [('v1.png', 2), ('v1.png', 0)]

    with pytest.raises(FileNotFoundError, match='imnet/nope'):
        ImageNet(data_root=str(root), split='nope')
    with pytest.raises(FileNotFoundError, match='meta/missing.txt'):
        ImageNet(data_root=str(root), split='val', ann_file='meta/missing.txt')
    ann.write_text('v1.png 2\nv1.png\n')
    with pytest.raises(ValueError, match='val.txt:2'):
        ImageNet(data_root=str(root), split='val', ann_file='meta/val.txt')
    ann.write_text('v1.png 3\n')
    with pytest.raises(ValueError, match='val.txt:1: label 3'):
        ImageNet(data_root=str(root), split='val', ann_file='meta/val.txt', classes=['a', 'b', 'c'])
