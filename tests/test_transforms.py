"""Transforms: crop sampling and resizing vs torchvision on PIL images, image loading errors, timm
wrapper, packing."""
import itertools
import os
import random

import cv2
import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import RandomResizedCrop as TorchvisionRandomResizedCrop

from localmim.datasets import ImageNet, LoadImage, PackInputs, RandomResizedCrop, Resize, TimmTransform
from localmim.datasets.transforms import draft_scale, sample_resized_crop
from localmim.registry import TRANSFORMS


def test_crop_fallback_matches_torchvision():
    # no attempt can fit -> deterministic centre fallback, identical to torchvision's
    for height, width, scale, ratio in ((100, 20, (1.0, 1.0), (1.0, 1.0)), (20, 100, (1.0, 1.0), (0.5, 2.0)),
                                        (30, 30, (1.0, 1.0), (1.2, 1.5))):
        img = torch.zeros(1, height, width)
        expected = TorchvisionRandomResizedCrop.get_params(img, scale=list(scale), ratio=list(ratio))
        got = sample_resized_crop(height, width, scale, ratio, rng=np.random.RandomState(0))
        assert got == tuple(expected), (height, width, got, expected)


def test_crop_distribution_matches_torchvision():
    height, width, scale, ratio, n = 180, 240, (0.2, 1.0), (3 / 4, 4 / 3), 4000
    rng = np.random.RandomState(1)
    ours = np.array([sample_resized_crop(height, width, scale, ratio, rng=rng) for _ in range(n)], float)
    torch.manual_seed(1)
    img = torch.zeros(1, height, width)
    theirs = np.array([TorchvisionRandomResizedCrop.get_params(img, list(scale), list(ratio)) for _ in range(n)], float)
    for boxes in (ours, theirs):
        top, left, h, w = boxes.T
        assert (top >= 0).all() and (left >= 0).all() and (top + h <= height).all() and (left + w <= width).all()
    # area fraction, log-aspect and centre statistics agree within sampling noise
    def stats(b):
        return np.array([(b[:, 2] * b[:, 3]).mean() / (height * width), np.log(b[:, 3] / b[:, 2]).mean(),
                         (b[:, 0] + b[:, 2] / 2).mean() / height, (b[:, 1] + b[:, 3] / 2).mean() / width])
    np.testing.assert_allclose(stats(ours), stats(theirs), atol=0.02)


def textured_image(height, width, seed=0):
    """uint8 RGB with smooth shading, fine stripes and noise: aliasing shows when shrinking it."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:height, :width]
    img = 128 + 60 * np.sin(x / 17.0)[..., None] * np.cos(y / 23.0)[..., None] \
        + 40 * np.sign(np.sin(x * 1.3 + y * 0.7))[..., None] + rng.normal(0, 20, (height, width, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.mark.parametrize('backend', ['pillow', 'torch'])
def test_random_resized_crop_matches_torchvision_on_pil_images(backend):
    img = textured_image(200, 260)
    pil = Image.fromarray(img)
    transform = RandomResizedCrop(size=(48, 64), scale=(0.2, 1.0), backend=backend)
    np.random.seed(0)
    for _ in range(6):
        out = transform(dict(img=img))
        x1, y1, x2, y2 = out['crop_bbox']
        assert out['img'].shape == (48, 64, 3) and out['img_shape'] == (48, 64)
        expected = np.asarray(TF.resized_crop(pil, y1, x1, y2 - y1, x2 - x1, [48, 64], InterpolationMode.BICUBIC))
        diff = np.abs(out['img'].astype(float) - expected).mean()
        assert diff == 0 if backend == 'pillow' else diff < 1, (backend, out['crop_bbox'], diff)
    # OpenCV's bicubic (no antialiasing, a = -0.75), the former resize, is far from it: the check can fail
    crop = img[y1:y2, x1:x2]
    assert np.abs(cv2.resize(crop, (64, 48), interpolation=cv2.INTER_CUBIC).astype(float) - expected).mean() > 5


def test_random_resized_crop_options():
    img = np.random.default_rng(0).integers(0, 256, size=(50, 50, 3), dtype=np.uint8)
    out = TRANSFORMS.build(dict(type='localmim.RandomResizedCrop', size=224, scale=(1, 1), ratio=(1, 1)))(dict(img=img))
    assert out['crop_bbox'] == (0, 0, 50, 50)
    np.testing.assert_array_equal(out['img'], np.asarray(Image.fromarray(img).resize((224, 224), Image.BICUBIC)))
    with pytest.raises(ValueError, match='scale'):
        RandomResizedCrop(224, scale=(0.5, 0.2))
    with pytest.raises(ValueError, match="'cv2'.*antialias"):
        RandomResizedCrop(224, backend='cv2')
    with pytest.raises(ValueError, match='interpolation'):
        Resize(224, interpolation='area')


@pytest.mark.parametrize('backend', ['pillow', 'torch'])
def test_resize_matches_pil(backend):
    for (size, shape), mode in itertools.product((((28, 28, 3), (64, 48)), ((90, 70, 3), (32, 40))),  # up, down
                                                 ('bicubic', 'bilinear', 'nearest')):
        img = textured_image(*size[:2], seed=1)
        out = Resize(shape, interpolation=mode, backend=backend)(dict(img=img))
        expected = np.asarray(Image.fromarray(img).resize(shape[::-1], getattr(Image, mode.upper())))
        assert out['img'].shape == expected.shape and out['img_shape'] == shape
        assert np.abs(out['img'].astype(float) - expected).mean() < (1e-9 if backend == 'pillow' else 1)
        assert out['scale_factor'] == (shape[1] / size[1], shape[0] / size[0])


@pytest.fixture
def image_files(tmp_path):
    rng = np.random.default_rng(0)
    bgr = rng.integers(0, 256, size=(64, 48, 3), dtype=np.uint8)
    good = str(tmp_path / 'good.png')
    cv2.imwrite(good, bgr)
    jpg = str(tmp_path / 'full.jpg')
    cv2.imwrite(jpg, bgr)
    data = open(jpg, 'rb').read()
    truncated = str(tmp_path / 'truncated.jpg')
    open(truncated, 'wb').write(data[:len(data) // 2])
    garbage = str(tmp_path / 'garbage.jpg')
    open(garbage, 'wb').write(bytes(rng.integers(0, 256, size=500, dtype=np.uint8)))
    return dict(good=good, bgr=bgr, truncated=truncated, garbage=garbage)


def test_load_image(image_files):
    out = LoadImage()(dict(img_path=image_files['good']))
    np.testing.assert_array_equal(out['img'], image_files['bgr'][:, :, ::-1])
    assert out['img_shape'] == out['ori_shape'] == (64, 48)
    for kind in ('truncated', 'garbage'):
        with pytest.raises(OSError, match=os.path.basename(image_files[kind])):
            LoadImage(on_error='raise')(dict(img_path=image_files[kind]))
    loader = LoadImage(on_error='skip')
    assert loader(dict(img_path=image_files['truncated'])) is None
    assert loader(dict(img_path=image_files['garbage'])) is None
    assert loader.num_skipped == 2
    with pytest.raises(ValueError, match='on_error'):
        LoadImage(on_error='ignore')


def test_skip_at_dataset_level(tmp_path, image_files):
    for cls, src in (('a', 'good'), ('b', 'truncated')):
        os.makedirs(tmp_path / 'root' / 'train' / cls)
        os.replace(image_files[src], tmp_path / 'root' / 'train' / cls / 'x.jpg')
    ds = ImageNet(data_root=str(tmp_path / 'root'), split='train',
                  pipeline=[dict(type='localmim.LoadImage', on_error='skip'), dict(type='localmim.PackInputs')])
    np.random.seed(0)
    packed = ds[1]  # the truncated one: another sample comes back
    assert packed['data_samples'].img_path.endswith(os.path.join('a', 'x.jpg'))
    assert packed['data_samples'].gt_label.tolist() == [0]
    assert ds.num_skipped >= 1
    strict = ImageNet(data_root=str(tmp_path / 'root'), split='train', pipeline=[dict(type='localmim.LoadImage')])
    with pytest.raises(OSError, match=r'b/x\.jpg'):
        strict[1]


@pytest.mark.parametrize('is_training', [False, True])
def test_timm_transform_is_timms(is_training):
    from timm.data import create_transform
    kwargs = dict(input_size=32, is_training=is_training, interpolation='bicubic')
    if is_training:
        kwargs.update(auto_augment='rand-m9-mstd0.5-inc1', re_prob=0.25, re_mode='pixel')
    img = np.random.default_rng(2).integers(0, 256, size=(40, 50, 3), dtype=np.uint8)
    ours_fn = TRANSFORMS.build(dict(type='localmim.TimmTransform', **kwargs))
    theirs_fn = create_transform(**kwargs)

    def seed_all():  # timm draws from python's random, numpy and torch
        random.seed(3)
        np.random.seed(3)
        torch.manual_seed(3)

    seed_all()
    ours = ours_fn(dict(img=img.copy()))
    seed_all()
    theirs = theirs_fn(Image.fromarray(img))
    assert ours['img'].shape == (3, 32, 32) and ours['img'].dtype == torch.float32
    torch.testing.assert_close(ours['img'], theirs, rtol=0, atol=0)
    assert ours['img_shape'] == (32, 32)
    with pytest.raises(TypeError, match='uint8'):
        TimmTransform(input_size=32)(dict(img=img.astype(np.float32)))


def test_pack_inputs():
    img = np.random.default_rng(3).integers(0, 256, size=(6, 5, 3), dtype=np.uint8)
    mask = np.random.default_rng(4).random((2, 3)) > 0.5
    out = PackInputs()(dict(img=img, gt_label=7, mask=mask, img_path='p.jpg', img_shape=(6, 5), other=1))
    assert out['inputs'].dtype == torch.uint8 and out['inputs'].shape == (3, 6, 5)
    for c in range(3):
        np.testing.assert_array_equal(out['inputs'][c].numpy(), img[:, :, c])
    sample = out['data_samples']
    assert sample.gt_label.tolist() == [7] and sample.gt_label.dtype == torch.long
    np.testing.assert_array_equal(sample.mask, mask)
    assert sample.img_path == 'p.jpg' and sample.img_shape == (6, 5) and 'other' not in sample.metainfo_keys()
    tensor = torch.randn(3, 4, 4)
    assert PackInputs()(dict(img=tensor))['inputs'] is tensor


def test_finetune_randaugment_of_the_configs_runs_with_this_pillow():
    """timm's increasing Posterize at magnitude 10 asks Pillow for 0 bits, which Pillow >= 10
    refuses; the configs clip the magnitude at 9. Forced to the top magnitude with Posterize
    as the only op, the release's string fails and the configs' strings do not."""
    from mmengine.config import Config
    from timm.data.auto_augment import rand_augment_transform

    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))

    def at_top_magnitude(config_str):
        config_str = config_str.replace('-m9', '-m10').replace('-mstd0.5', '') + '-n1-p1'
        return rand_augment_transform(config_str, {}, transforms=['PosterizeIncreasing'])

    with pytest.raises(ValueError, match='bits'):
        at_top_magnitude('rand-m9-mstd0.5-inc1')(image)
    for path in ('mm_configs/imagenet/_base_/fashion_mnist.py', 'mm_configs/imagenet/_base_/imagenet_finetune.py'):
        timm_cfg = next(t for t in Config.fromfile(path).train_pipeline if 'TimmTransform' in t['type'])
        at_top_magnitude(timm_cfg['auto_augment'])(image)


# ---- reduced-scale JPEG decoding (LoadImage(lazy=True) + RandomResizedCrop) ----------------------
def photo_jpeg(path, height=375, width=500, seed=0):
    """An ImageNet-like JPEG (quality 90): smooth colour fields plus grain."""
    rng = np.random.default_rng(seed)
    low = torch.from_numpy(rng.normal(size=(1, 3, height // 25, width // 25))).float()
    img = torch.nn.functional.interpolate(low, size=(height, width), mode='bicubic')[0] * 60 + 128
    img += torch.from_numpy(rng.normal(size=(3, height, width))).float() * 12
    Image.fromarray(img.clamp(0, 255).byte().permute(1, 2, 0).numpy()).save(path, quality=90)
    return path


def decoded_crop(path, box, size, lazy):
    """RandomResizedCrop on a fixed box, after an eager or a lazy LoadImage."""
    results = LoadImage(lazy=lazy)(dict(img_path=str(path)))
    top, left, h, w = box
    transform = RandomResizedCrop(size)
    transform_box = lambda *args, **kw: box  # noqa: E731
    import localmim.datasets.transforms as module
    saved, module.sample_resized_crop = module.sample_resized_crop, transform_box
    try:
        out = transform(results)
    finally:
        module.sample_resized_crop = saved
    assert out['crop_bbox'] == (left, top, left + w, top + h)
    return out['img'].astype(int)


def test_lazy_decode_keeps_the_crop_box_in_original_pixels(tmp_path):
    path = photo_jpeg(tmp_path / 'photo.jpg')
    full = np.asarray(Image.open(path).convert('RGB'))
    # crops less than 2x the output on a side: no draft, exactly the eager result (= torchvision's)
    for box in [(5, 7, 100, 120), (0, 0, 375, 500)]:
        size = (60, 80) if box[2] == 100 else (224, 224)
        eager, lazy = decoded_crop(path, box, size, False), decoded_crop(path, box, size, True)
        expected = np.asarray(TF.resized_crop(Image.fromarray(full), *box, list(size), InterpolationMode.BICUBIC))
        assert np.array_equal(lazy, eager) and np.array_equal(eager, expected)
    # larger crops decode at 1/2, 1/4 or 1/8 scale: within a grey level on average of the full
    # decode, on the same part of the picture (a box 3 px off is much further away)
    for box, size, scale in [((0, 0, 375, 500), (40, 40), 8), ((10, 20, 300, 260), (56, 56), 4),
                             ((100, 50, 150, 200), (56, 56), 2)]:
        assert draft_scale(box[2:], size) == scale
        eager, lazy = decoded_crop(path, box, size, False), decoded_crop(path, box, size, True)
        shifted = decoded_crop(path, (box[0] + 3, box[1] + 3, box[2] - 3, box[3] - 3), size, False)
        diff = np.abs(lazy - eager)
        assert diff.mean() < 1 and diff.max() <= 8, (box, diff.mean(), diff.max())
        assert np.abs(shifted - eager).mean() > 3 * diff.mean()


def test_lazy_decode_refuses_skip_and_names_a_broken_file(tmp_path):
    with pytest.raises(ValueError, match="lazy=True.*on_error='raise'"):
        LoadImage(lazy=True, on_error='skip')
    path = photo_jpeg(tmp_path / 'photo.jpg')
    data = path.read_bytes()
    (tmp_path / 'cut.jpg').write_bytes(data[:len(data) // 2])
    results = LoadImage(lazy=True)(dict(img_path=str(tmp_path / 'cut.jpg')))
    with pytest.raises(OSError, match='cannot read image file .*cut.jpg'):
        RandomResizedCrop(224, scale=(0.2, 1.0))(results)


def test_draft_scale_never_goes_below_the_output_resolution():
    assert draft_scale((100, 100), (224, 224)) == 1  # upscaling crop
    assert draft_scale((447, 900), (224, 224)) == 1 and draft_scale((448, 900), (224, 224)) == 2
    assert draft_scale((1800, 1792), (224, 224)) == 8 and draft_scale((1800, 1791), (224, 224)) == 4
