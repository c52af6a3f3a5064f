"""Generate the Fashion-MNIST canvas set (COCO instances + ADE20K-style semantic maps, same images).

Example:
    python tools/make_fmnist_detection.py --out data/fmnist_canvas --num-train 1000 --num-val 200
    # the small canvases of the tiny ViT's Mask R-CNN and UperNet configs and of tools/demo.py (items
    # at the pretraining scale of pretrain/localmim_vit-tiny_fmnist.py)
    python tools/make_fmnist_detection.py --out data/fmnist_canvas_64 --canvas-size 64 --item-size 32 64 --num-items 1 3

Layout and label convention: see ``localmim/datasets/fmnist_canvas.py``. Use it with
``localmim.FashionCocoDataset`` (ann_file='annotations/instances_training.json',
data_prefix=dict(img='images/training/')) and ``localmim.FashionADEDataset``
(data_prefix=dict(img_path='images/training', seg_map_path='annotations/training')).
"""
import argparse

from localmim.datasets.fashion_mnist import DEFAULT_FASHION_MNIST_ROOT
from localmim.datasets.fmnist_canvas import write_fmnist_canvas_dataset


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', required=True, help='output folder')
    parser.add_argument('--num-train', type=int, default=1000, help='training canvases')
    parser.add_argument('--num-val', type=int, default=200, help='validation canvases')
    parser.add_argument('--canvas-size', type=int, nargs='+', default=[128],
                        help='canvas side, or height and width')
    parser.add_argument('--item-size', type=int, nargs=2, default=[28, 96], metavar=('MIN', 'MAX'),
                        help='range of the rescaled item side in pixels (capped by the canvas)')
    parser.add_argument('--num-items', type=int, nargs=2, default=[2, 5], metavar=('MIN', 'MAX'),
                        help='range of the items attempted per canvas (one that finds no free place is dropped)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--data-root', default=DEFAULT_FASHION_MNIST_ROOT, help='Fashion-MNIST idx folder')
    args = parser.parse_args(argv)
    if len(args.canvas_size) not in (1, 2):
        parser.error('--canvas-size takes one or two integers')
    for flag, (low, high) in (('--item-size', args.item_size), ('--num-items', args.num_items)):
        if not 1 <= low <= high:
            parser.error(f'{flag} takes MIN MAX with 1 <= MIN <= MAX, got {low} {high}')
    return args


def main(argv=None):
    args = parse_args(argv)
    size = args.canvas_size[0] if len(args.canvas_size) == 1 else tuple(args.canvas_size)
    counts = write_fmnist_canvas_dataset(args.out, data_root=args.data_root, num_train=args.num_train,
                                         num_val=args.num_val, canvas_size=size, seed=args.seed,
                                         item_size=tuple(args.item_size), num_items=tuple(args.num_items))
    for split, num in counts.items():
        print(f'{split}: {args.num_train if split == "training" else args.num_val} images, {num} instances')
    print(f'written under {args.out}')


if __name__ == '__main__':
    main()
