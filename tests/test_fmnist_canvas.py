"""Fashion-MNIST canvas generator: exact polygons, determinism, COCO/ADE consistency, mmdet/mmseg loading,
and mmdet's CocoMetric / mmseg's IoUMetric on the ground truth fed back as predictions."""
import filecmp
import json
import os
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from _data_helpers import write_tiny_fashion_mnist
from pycocotools import mask as mask_utils

from localmim.datasets.fmnist_canvas import (FASHION_ADE_CLASSES, FMNIST_COCO_METAINFO, make_canvas, mask_bbox,
                                             polygons_to_mask, silhouette_polygons)
from localmim.registry import DATASETS

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def _make_fmnist_detection(argv):
    """Run tools/make_fmnist_detection.py's main with ``argv``."""
    import importlib.util
    spec = importlib.util.spec_from_file_location('make_fmnist_detection',
                                                  osp.join(REPO, 'tools', 'make_fmnist_detection.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(argv)


SPLITS = ('training', 'validation')


@pytest.fixture(scope='module')
def fmnist_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('fmnist'))
    write_tiny_fashion_mnist(root)
    return root


@pytest.fixture(scope='module')
def canvas_set(fmnist_root, tmp_path_factory):
    out = str(tmp_path_factory.mktemp('canvas'))
    _make_fmnist_detection(['--out', out, '--num-train', '4', '--num-val', '3', '--canvas-size', '96', '--seed', '5',
                            '--data-root', fmnist_root])
    return out


def _filled(silhouette):
    filled = np.zeros(silhouette.shape, np.uint8)
    contours, _ = cv2.findContours(silhouette.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(filled, contours, -1, 1, thickness=-1)
    return filled.astype(bool)


def test_polygons_rasterise_to_the_filled_silhouette():
    rng = np.random.default_rng(0)
    for _ in range(50):
        noise = cv2.resize(rng.random((5, 5)).astype(np.float32), (33, 31), interpolation=cv2.INTER_CUBIC)
        silhouette = noise > 0.6
        if not silhouette.any():
            continue
        big = np.zeros((40, 45), bool)
        big[4:35, 7:40] = silhouette
        polygons = silhouette_polygons(silhouette, offset=(7, 4))
        np.testing.assert_array_equal(polygons_to_mask(polygons, 40, 45), _filled(big))
    single = np.zeros((3, 3), bool)
    single[1, 1] = True
    assert polygons_to_mask(silhouette_polygons(single), 3, 3).tolist() == single.tolist()
    assert mask_bbox(single) == [1, 1, 1, 1]


def test_make_canvas_items_disjoint_and_painted(fmnist_root):
    from localmim.datasets.fashion_mnist import load_fashion_mnist
    images, labels = load_fashion_mnist(fmnist_root, 'train')
    canvas, items = make_canvas(images, labels, np.random.default_rng(0), canvas_size=(100, 120), num_items=(3, 3))
    assert canvas.shape == (100, 120, 3) and canvas.dtype == np.uint8 and 1 <= len(items) <= 3
    total = np.zeros((100, 120), int)
    for item in items:
        total += item['mask']
        np.testing.assert_array_equal(item['mask'], polygons_to_mask(item['polygons'], 100, 120))
    assert total.max() == 1


def test_generator_is_deterministic(canvas_set, fmnist_root, tmp_path):
    _make_fmnist_detection(['--out', str(tmp_path), '--num-train', '4', '--num-val', '3', '--canvas-size', '96',
                            '--seed', '5', '--data-root', fmnist_root])
    names = sorted(osp.relpath(osp.join(d, f), canvas_set) for d, _, fs in os.walk(canvas_set) for f in fs)
    assert len(names) == 2 + 2 * (4 + 3)
    assert names == sorted(osp.relpath(osp.join(d, f), tmp_path) for d, _, fs in os.walk(tmp_path) for f in fs)
    match, mismatch, errors = filecmp.cmpfiles(canvas_set, str(tmp_path), names, shallow=False)
    assert mismatch == [] and errors == []
    other = tmp_path / 'other_seed'
    _make_fmnist_detection(['--out', str(other), '--num-train', '4', '--num-val', '3', '--canvas-size', '96',
                            '--seed', '6', '--data-root', fmnist_root])
    assert not filecmp.cmp(osp.join(canvas_set, 'annotations/instances_training.json'),
                           str(other / 'annotations/instances_training.json'), shallow=False)


def test_item_size_and_count_options(fmnist_root, tmp_path):
    """--item-size and --num-items bound every item's side (its box, up to the silhouette's margin
    inside the rescaled square) and the items per canvas; a reversed range is refused by name."""
    _make_fmnist_detection(['--out', str(tmp_path), '--num-train', '12', '--num-val', '2', '--canvas-size', '64',
                            '--item-size', '40', '48', '--num-items', '1', '2', '--data-root', fmnist_root])
    coco = _coco(str(tmp_path), 'training')
    per_image = np.bincount([a['image_id'] for a in coco['annotations']], minlength=13)[1:]
    assert per_image.min() >= 1 and per_image.max() <= 2
    assert all(max(a['bbox'][2:]) <= 48 for a in coco['annotations'])
    # the rescaled square is >= 40 px; a Fashion-MNIST item spans most of its 28 px frame on one side
    assert all(max(a['bbox'][2:]) >= 40 * 20 / 28 for a in coco['annotations'])
    with pytest.raises(SystemExit):
        _make_fmnist_detection(['--out', str(tmp_path / 'x'), '--item-size', '48', '40'])


def _coco(canvas_set, split):
    with open(osp.join(canvas_set, 'annotations', f'instances_{split}.json')) as f:
        return json.load(f)


@pytest.mark.parametrize('split', SPLITS)
def test_boxes_masks_and_label_maps_agree(canvas_set, split):
    coco = _coco(canvas_set, split)
    assert [c['id'] for c in coco['categories']] == list(range(1, 11))
    assert coco['categories'][0]['name'] == 'T-shirt/top' and coco['categories'][9]['name'] == 'Ankle boot'
    for image in coco['images']:
        h, w = image['height'], image['width']
        assert (h, w) == (96, 96)
        img = cv2.imread(osp.join(canvas_set, 'images', split, image['file_name']))
        assert img.shape == (96, 96, 3)
        label_map = cv2.imread(osp.join(canvas_set, 'annotations', split,
                                        image['file_name'].replace('.jpg', '.png')), cv2.IMREAD_UNCHANGED)
        expected_map = np.ones((h, w), np.uint8)  # background = 1 in the file
        anns = [a for a in coco['annotations'] if a['image_id'] == image['id']]
        assert len(anns) >= 1
        for ann in anns:
            rle = mask_utils.merge(mask_utils.frPyObjects(ann['segmentation'], h, w))
            mask = mask_utils.decode(rle).astype(bool)
            assert ann['bbox'] == mask_utils.toBbox(rle).tolist()
            assert ann['area'] == int(mask_utils.area(rle)) > 0
            assert ann['iscrowd'] == 0 and 1 <= ann['category_id'] <= 10
            assert (expected_map[mask] == 1).all()  # instance masks are disjoint
            expected_map[mask] = ann['category_id'] + 1
        np.testing.assert_array_equal(label_map, expected_map)


def test_loads_with_mmdet_coco_dataset(canvas_set):
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    ds = DATASETS.build(dict(
        type='localmim.FashionCocoDataset', data_root=canvas_set, ann_file='annotations/instances_validation.json',
        data_prefix=dict(img='images/validation/'), test_mode=True,
        pipeline=[dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
                  dict(type='PackDetInputs')]))
    coco = _coco(canvas_set, 'validation')
    assert len(ds) == 3 and ds.metainfo['classes'][8] == 'Bag'
    for i in range(len(ds)):
        sample = ds[i]['data_samples']
        anns = [a for a in coco['annotations'] if a['image_id'] == sample.img_id]
        expected_boxes = [[x, y, x + w, y + h] for x, y, w, h in (a['bbox'] for a in anns)]
        assert sample.gt_instances.bboxes.tensor.tolist() == expected_boxes
        assert sample.gt_instances.labels.tolist() == [a['category_id'] - 1 for a in anns]
        masks = sample.gt_instances.masks.to_ndarray().astype(bool)
        for mask, ann in zip(masks, anns):
            np.testing.assert_array_equal(mask, polygons_to_mask(ann['segmentation'], 96, 96))


def _seg_dataset(canvas_set, split='training'):
    return DATASETS.build(dict(
        type='localmim.FashionADEDataset', data_root=canvas_set,
        data_prefix=dict(img_path=f'images/{split}', seg_map_path=f'annotations/{split}'),
        pipeline=[dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'), dict(type='PackSegInputs')]))


def test_loads_with_mmseg_dataset(canvas_set):
    from mmengine.registry import init_default_scope
    init_default_scope('mmseg')
    ds = _seg_dataset(canvas_set)
    assert len(ds) == 4 and ds.metainfo['classes'] == FASHION_ADE_CLASSES and ds.reduce_zero_label
    for i in range(len(ds)):
        sample = ds[i]['data_samples']
        raw = cv2.imread(sample.seg_map_path, cv2.IMREAD_UNCHANGED)
        # reduce_zero_label: background 1 -> 0, items k -> k - 1 (= COCO category id)
        np.testing.assert_array_equal(sample.gt_sem_seg.data[0].numpy(), raw.astype(np.int64) - 1)


def test_coco_metric_is_perfect_on_ground_truth(canvas_set):
    from mmdet.evaluation import CocoMetric
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    coco = _coco(canvas_set, 'training')
    metric = CocoMetric(ann_file=osp.join(canvas_set, 'annotations/instances_training.json'),
                        metric=['bbox', 'segm'])
    metric.dataset_meta = FMNIST_COCO_METAINFO
    for image in coco['images']:
        anns = [a for a in coco['annotations'] if a['image_id'] == image['id']]
        boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (a['bbox'] for a in anns)], dtype=torch.float32)
        masks = np.stack([polygons_to_mask(a['segmentation'], image['height'], image['width']) for a in anns])
        labels = torch.tensor([a['category_id'] - 1 for a in anns])
        pred = dict(bboxes=boxes, scores=torch.ones(len(anns)), labels=labels, masks=torch.from_numpy(masks))
        metric.process({}, [dict(img_id=image['id'], ori_shape=(image['height'], image['width']), pred_instances=pred)])
    results = metric.evaluate(len(coco['images']))
    assert results['coco/bbox_mAP'] == pytest.approx(1.0) and results['coco/segm_mAP'] == pytest.approx(1.0)
    assert results['coco/bbox_mAP_50'] == pytest.approx(1.0) and results['coco/segm_mAP_75'] == pytest.approx(1.0)


def test_iou_metric_is_perfect_on_ground_truth(canvas_set):
    from mmengine.registry import init_default_scope
    from mmseg.evaluation import IoUMetric
    init_default_scope('mmseg')
    ds = _seg_dataset(canvas_set)
    metric = IoUMetric(iou_metrics=['mIoU'])
    metric.dataset_meta = ds.metainfo
    for i in range(len(ds)):
        sample = ds[i]['data_samples']
        gt = sample.gt_sem_seg.data
        metric.process({}, [dict(pred_sem_seg=dict(data=gt.clone()), gt_sem_seg=dict(data=gt))])
    results = metric.evaluate(len(ds))
    assert results['mIoU'] == pytest.approx(100.0) and results['aAcc'] == pytest.approx(100.0)
