"""localmim.DaliImageNetLoader: the CPU fallback, the host plan (the CPU pipeline's boxes, flips and
masks, sample for sample) and, where NVIDIA DALI is installed, its images against the CPU pipeline's."""
import random

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from test_transforms import DCT_SCALED_MAX_TOL, DCT_SCALED_MEAN_TOL, photo_jpeg
from torch.utils.data import DataLoader

from localmim.datasets import ImageNet, SeededSampler
from localmim.datasets.dali import DaliImageNetLoader, DaliPlanner, dali_unavailable_reason
from localmim.datasets.transforms import draft_scale
from localmim.engine.runner import Runner

PIPELINE = Config.fromfile('mm_configs/pretrain/localmim_vit-b_1600e_in1k.py').train_pipeline


@pytest.fixture(autouse=True)
def localmim_scope():
    with DefaultScope.overwrite_default_scope('localmim'):
        yield


@pytest.fixture(scope='module')
def photo_root(tmp_path_factory):
    """12 photo-like JPEGs in 3 class folders, landscape and portrait, one of them 1000x1400."""
    root = tmp_path_factory.mktemp('imagenet')
    for i in range(12):
        folder = root / 'train' / f'n{i % 3:08d}'
        folder.mkdir(parents=True, exist_ok=True)
        shape = (1000, 1400) if i == 5 else ((375, 500) if i % 4 else (500, 375))
        photo_jpeg(folder / f'{i:04d}.jpg', *shape, seed=i)
    return str(root)


def with_crop_box(pipeline):
    """The pipeline whose PackInputs also keeps crop_bbox."""
    pack = dict(type='PackInputs', meta_keys=('sample_idx', 'img_path', 'ori_shape', 'img_shape', 'flip',
                                              'flip_direction', 'crop_bbox'))
    return list(pipeline[:-1]) + [pack]


def test_without_dali_or_gpu_the_cpu_loader_runs_after_one_warning(photo_root):
    cfg = dict(type='localmim.DaliImageNetLoader', batch_size=4, num_workers=0,
               sampler=dict(type='SeededSampler', shuffle=True),
               dataset=dict(type='ImageNet', data_root=photo_root, pipeline=PIPELINE))
    reason = dali_unavailable_reason()
    if reason is None:  # a machine with DALI and a GPU: the DALI loader itself
        assert isinstance(Runner.build_dataloader(cfg, seed=0), DaliImageNetLoader)
        return
    with pytest.warns(UserWarning) as record:
        loader = Runner.build_dataloader(cfg, seed=0)
    messages = [str(w.message) for w in record if 'DaliImageNetLoader' in str(w.message)]
    assert len(messages) == 1
    assert reason in messages[0] and 'CPU input pipeline' in messages[0] and 'nvidia-dali-cuda130' in messages[0]
    assert isinstance(loader, DataLoader) and isinstance(loader.sampler, SeededSampler)
    batch = next(iter(loader))
    assert len(batch['inputs']) == 4 and batch['inputs'][0].shape == (3, 224, 224)
    assert batch['data_samples'][0].mask.shape == (14, 14)
    # without a type: mmengine's loader, no warning path involved
    plain = {k: v for k, v in cfg.items() if k != 'type'}
    assert isinstance(Runner.build_dataloader(plain, seed=0), DataLoader)
    with pytest.raises(KeyError, match='unknown train_dataloader type .*DaliImageNetLoader'):
        Runner.build_dataloader(dict(cfg, type='DaliLoader'), seed=0)


@pytest.mark.parametrize('flip', [dict(type='RandomHorizontalFlip', prob=0.5),
                                  dict(type='RandomFlip', prob=0.5, direction='horizontal')])
def test_the_host_plan_draws_what_the_cpu_pipeline_draws(photo_root, flip):
    pipeline = with_crop_box([PIPELINE[0], PIPELINE[1], flip] + list(PIPELINE[3:]))
    dataset = ImageNet(photo_root, pipeline=pipeline)
    planner = DaliPlanner(dataset)
    items = [(i, 1000 + 7 * i) for i in range(len(dataset))] * 2
    random.seed(1)
    np.random.seed(1)
    before = random.random(), np.random.random_sample()
    random.seed(1)
    np.random.seed(1)
    plans = planner.plan_batch(items)
    assert (random.random(), np.random.random_sample()) == before  # the caller's generators untouched
    flips = set()
    for (index, seed), (data, box, flipped, sample) in zip(items, plans):
        expected = dataset[(index, seed)]['data_samples']
        assert sample.metainfo_keys() == expected.metainfo_keys()
        for key in ('img_path', 'ori_shape', 'img_shape', 'flip', 'flip_direction', 'crop_bbox', 'sample_idx'):
            assert sample.get(key) == expected.get(key), key
        np.testing.assert_array_equal(sample.mask, expected.mask)
        assert sample.gt_label.tolist() == expected.gt_label.tolist()
        top, left, h, w = box
        assert expected.crop_bbox == (left, top, left + w, top + h) and flipped == expected.flip
        assert data == open(expected.img_path, 'rb').read()
        flips.add(flipped)
    assert flips == {False, True}


def test_the_host_plan_refuses_what_dali_cannot_run(photo_root):
    for bad, name in ((PIPELINE[:1] + [dict(type='Resize', size=224)] + PIPELINE[2:], 'RandomResizedCrop'),
                      (PIPELINE[:2] + [dict(type='RandomFlip', prob=0.5, direction='vertical')] + PIPELINE[3:],
                       'RandomFlip'),
                      (PIPELINE[:-1], 'PackInputs')):
        with pytest.raises(ValueError, match=f'DaliImageNetLoader.*{name}'):
            DaliPlanner(ImageNet(photo_root, pipeline=bad))


def dali_against_cpu(photo_root, device, mean_tol, max_tol):
    """Two full epochs, one abandoned midway in between, of the DALI loader against dataset[(index, seed)]:
    the same crops, flips and masks; pixels within ``mean_tol`` / ``max_tol`` where the CPU pipeline
    decodes at full scale."""
    dataset = ImageNet(photo_root, pipeline=with_crop_box(PIPELINE))
    sampler = SeededSampler(dataset, shuffle=True, seed=3)
    loader = DaliImageNetLoader(dataset, sampler, batch_size=5, drop_last=False, device=device, num_threads=1)
    assert len(loader) == 3
    worst = []
    for epoch, stop_after in ((0, None), (1, 1), (2, None)):
        sampler.set_epoch(epoch)
        items = list(sampler)
        seen = 0
        for b, batch in enumerate(loader):
            assert batch['inputs'].shape[1:] == (3, 224, 224) and batch['inputs'].dtype == torch.uint8
            for img, sample in zip(batch['inputs'].cpu(), batch['data_samples']):
                expected = dataset[items[seen]]
                assert sample.img_path == expected['data_samples'].img_path and \
                    sample.crop_bbox == expected['data_samples'].crop_bbox
                np.testing.assert_array_equal(sample.mask, expected['data_samples'].mask)
                diff = (img.int() - expected['inputs'].int()).abs().float()
                x1, y1, x2, y2 = sample.crop_bbox
                dct_scaled = draft_scale((y2 - y1, x2 - x1), (224, 224)) > 1  # on the CPU only
                worst.append((dct_scaled, diff.mean().item(), diff.max().item()))
                shifted = expected['inputs'].roll(2, dims=-1).int()  # the check can fail
                assert (img.int() - shifted).abs().float().mean() > 3 * DCT_SCALED_MEAN_TOL
                seen += 1
            if stop_after is not None and b == stop_after:
                break
        assert seen == (10 if stop_after is not None else 12)
    worst = np.array(worst)
    full, scaled = worst[worst[:, 0] == 0, 1:], worst[worst[:, 0] == 1, 1:]
    assert len(full) and len(scaled)
    assert full[:, 0].max() < mean_tol and full[:, 1].max() <= max_tol, full.max(0)
    assert scaled[:, 0].max() < DCT_SCALED_MEAN_TOL and scaled[:, 1].max() <= DCT_SCALED_MAX_TOL, scaled.max(0)


@pytest.mark.skipif(dali_unavailable_reason('cpu') is not None, reason='NVIDIA DALI is not installed')
def test_dali_cpu_mode_gives_the_cpu_pipelines_images(photo_root):
    # DALI's CPU decoder is libjpeg-turbo (the same pixels); its cubic antialiased resize against
    # torch's PIL filter, measured on the benchmark JPEGs: mean |diff| 0.17-0.21 per image, max 3.
    # DALI decodes every crop at full scale; where the CPU pipeline decodes at 1/2-1/8 (crops of
    # the 1000x1400 image), the DCT-scaled tolerances of test_transforms.py apply.
    dali_against_cpu(photo_root, 'cpu', mean_tol=0.5, max_tol=4)


@pytest.mark.skipif(dali_unavailable_reason('gpu') is not None, reason='needs NVIDIA DALI and a CUDA GPU')
def test_dali_gpu_decoding_gives_the_cpu_pipelines_images(photo_root):
    # nvJPEG's IDCT and chroma upsampling (fancy upsampling on) are not libjpeg-turbo's bit for bit:
    # bounds as loose as the DCT-scaled decode's (not yet measured on a GPU).
    dali_against_cpu(photo_root, 'gpu', mean_tol=DCT_SCALED_MEAN_TOL, max_tol=DCT_SCALED_MAX_TOL)
