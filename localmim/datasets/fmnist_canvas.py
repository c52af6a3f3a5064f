"""Small detection / instance / semantic segmentation sets made of Fashion-MNIST items on canvases.

Each canvas (default 128x128, RGB) holds 2-5 Fashion-MNIST items at random scales (28-96 px) and
positions over a dark noisy background, each item tinted with a random colour. Item masks never
overlap, so instance masks, boxes and the semantic map are consistent by construction:

* an item's silhouette is ``grey > threshold`` of the rescaled item with its holes filled; its
  polygons are the outer contours (``cv2.findContours``) traced on the silhouette upsampled x2, so
  that pycocotools' rasterisation of the polygons gives back exactly that silhouette;
* the instance mask IS the polygons rasterised by pycocotools; the box (COCO ``[x, y, w, h]``) is
  that mask's extent and ``area`` its pixel count; only mask pixels are painted with the item.

Output layout under ``out`` (the same canvases serve both tasks; splits ``training`` /
``validation``, made from the Fashion-MNIST train / test items respectively)::

    images/{training,validation}/000000.jpg           the canvases
    annotations/instances_{training,validation}.json   COCO: category ids 1..10 = FMNIST label + 1
    annotations/{training,validation}/000000.png       ADE20K-style label maps

Label convention of the PNG maps (ADE20K's, read with ``reduce_zero_label=True``): the file holds
1 for background and ``FMNIST label + 2`` (2..11) for items; 0 is never written. mmseg's
reduce_zero_label maps 0 -> 255 (ignore) and k -> k - 1, so the training labels are 0 = background
and 1..10 = the items, i.e. the same numbers as the COCO category ids (11 classes in all).
"""
import json
import os
import os.path as osp
import warnings

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from .fashion_mnist import DEFAULT_FASHION_MNIST_ROOT, FASHION_MNIST_CLASSES, load_fashion_mnist

__all__ = ['FASHION_ADE_CLASSES', 'FASHION_PALETTE', 'FMNIST_COCO_METAINFO', 'FASHION_ADE_METAINFO', 'SPLITS',
           'silhouette_polygons', 'polygons_to_mask', 'mask_bbox', 'make_canvas', 'write_fmnist_canvas_dataset']

FASHION_ADE_CLASSES = ('background',) + FASHION_MNIST_CLASSES
# RGB colours: background, then the 10 items
FASHION_PALETTE = [(0, 0, 0), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
                   (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212)]
FMNIST_COCO_METAINFO = dict(classes=FASHION_MNIST_CLASSES, palette=FASHION_PALETTE[1:])
FASHION_ADE_METAINFO = dict(classes=FASHION_ADE_CLASSES, palette=FASHION_PALETTE)
SPLITS = {'training': 'train', 'validation': 'test'}  # output split -> Fashion-MNIST split of its items


def silhouette_polygons(silhouette, offset=(0, 0)):
    """Outer-contour polygons of a binary (h, w) silhouette, shifted by ``offset`` = (x, y).

    Returns COCO polygons ``[[x1, y1, x2, y2, ...], ...]`` (at least 3 points each) whose
    rasterisation by pycocotools is the silhouette with its holes filled.
    """
    upsampled = np.kron(silhouette.astype(np.uint8), np.ones((2, 2), np.uint8))
    contours, _ = cv2.findContours(upsampled, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    # contour point p of the x2 grid lies at (p + 0.5) / 2 in pixel-edge coordinates
    return [((c.reshape(-1, 2) + 0.5) / 2 + np.asarray(offset)).ravel().tolist() for c in contours if len(c) >= 3]


def polygons_to_mask(polygons, height, width):
    """Rasterise COCO polygons with pycocotools: (height, width) bool."""
    rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    with warnings.catch_warnings():  # pycocotools' decode trips numpy 2's __array__(copy=...) deprecation
        warnings.simplefilter('ignore', DeprecationWarning)
        return mask_utils.decode(rle).astype(bool)


def mask_bbox(mask):
    """COCO box ``[x, y, w, h]`` (ints) of a non-empty (H, W) bool mask's extent."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)]


def make_canvas(images, labels, rng, canvas_size=128, num_items=(2, 5), item_size=(28, 96), threshold=20,
                min_area=30, max_tries=50):
    """Compose one canvas.

    Args:
        images: (N, 28, 28) uint8 Fashion-MNIST items; labels: (N,) their labels.
        rng: ``np.random.Generator``.
        canvas_size: int or (height, width).
        num_items: inclusive range of items attempted (an item that finds no free place after
            ``max_tries`` draws is dropped; the first item always fits).
        item_size: inclusive range of the rescaled item side in pixels (capped by the canvas).
        threshold: grey level above which a rescaled item pixel belongs to the item.
        min_area: items whose mask has fewer pixels are redrawn.

    Returns:
        canvas (H, W, 3) uint8 RGB, and a list of ``dict(label, polygons, mask)`` per item
        (``mask`` (H, W) bool, disjoint between items).
    """
    height, width = (canvas_size, canvas_size) if isinstance(canvas_size, int) else canvas_size
    max_side = min(item_size[1], height, width)
    background = rng.uniform(0, 30) + rng.normal(0, 6, size=(height, width, 1))
    canvas = np.clip(np.repeat(background, 3, axis=2), 0, 255).astype(np.uint8)
    occupied = np.zeros((height, width), bool)
    items = []
    for _ in range(int(rng.integers(num_items[0], num_items[1] + 1))):
        for _ in range(max_tries):
            index = int(rng.integers(len(images)))
            side = int(rng.integers(item_size[0], max_side + 1))
            left, top = int(rng.integers(width - side + 1)), int(rng.integers(height - side + 1))
            grey = cv2.resize(images[index], (side, side), interpolation=cv2.INTER_LINEAR)
            polygons = silhouette_polygons(grey > threshold, offset=(left, top))
            if not polygons:
                continue
            mask = polygons_to_mask(polygons, height, width)
            if mask.sum() < min_area or (mask & occupied).any():
                continue
            tint = rng.uniform(0.5, 1.0, size=3)
            item_rgb = np.zeros((height, width, 3), np.float64)
            item_rgb[top:top + side, left:left + side] = grey[:, :, None] * tint
            canvas[mask] = np.round(item_rgb[mask]).astype(np.uint8)
            occupied |= mask
            items.append(dict(label=int(labels[index]), polygons=polygons, mask=mask))
            break
    return canvas, items


def _coco_categories():
    return [dict(id=i + 1, name=name, supercategory='fashion') for i, name in enumerate(FASHION_MNIST_CLASSES)]


def write_fmnist_canvas_dataset(out, data_root=DEFAULT_FASHION_MNIST_ROOT, num_train=1000, num_val=200,
                                canvas_size=128, seed=0, **canvas_kwargs):
    """Generate both splits under ``out`` (layout in the module docstring); deterministic by ``seed``.

    ``canvas_kwargs`` go to :func:`make_canvas`. Returns ``{split: number of annotations}``.
    """
    counts = {}
    for split_id, (split, fmnist_split) in enumerate(SPLITS.items()):
        num_canvases = num_train if split == 'training' else num_val
        images, labels = load_fashion_mnist(data_root, fmnist_split)
        rng = np.random.default_rng([seed, split_id])
        image_dir = osp.join(out, 'images', split)
        label_dir = osp.join(out, 'annotations', split)
        os.makedirs(image_dir, exist_ok=True)
        os.makedirs(label_dir, exist_ok=True)
        coco = dict(images=[], annotations=[], categories=_coco_categories())
        for i in range(num_canvases):
            canvas, items = make_canvas(images, labels, rng, canvas_size, **canvas_kwargs)
            name = f'{i:06d}'
            cv2.imwrite(osp.join(image_dir, name + '.jpg'), canvas[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
            label_map = np.ones(canvas.shape[:2], np.uint8)  # 1 = background
            coco['images'].append(dict(id=i + 1, file_name=name + '.jpg', height=canvas.shape[0],
                                       width=canvas.shape[1]))
            for item in items:
                label_map[item['mask']] = item['label'] + 2
                coco['annotations'].append(dict(
                    id=len(coco['annotations']) + 1, image_id=i + 1, category_id=item['label'] + 1,
                    bbox=mask_bbox(item['mask']), area=int(item['mask'].sum()),
                    segmentation=item['polygons'], iscrowd=0))
            cv2.imwrite(osp.join(label_dir, name + '.png'), label_map)
        with open(osp.join(out, 'annotations', f'instances_{split}.json'), 'w') as f:
            json.dump(coco, f)
        counts[split] = len(coco['annotations'])
    return counts
