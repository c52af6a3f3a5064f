"""Save a PNG of LocalMIM reconstructions: masked input, then target | prediction at every scale.

    python tools/visualize_reconstruction.py CONFIG CHECKPOINT [--indices 0 1 2 | --images a.png b.jpg]
        [--split test] [--data-root DIR] [--seed 0] [--panel-px 384] [--out recon.png]
        [--cfg-options key=value ...]

CHECKPOINT: a localmim/mmengine checkpoint, a LocalMIM release ViT checkpoint, or ``random``.
The masked region is outlined in yellow on targets and predictions (only it is trained); see
``localmim/visualization/reconstruction.py`` for the drawing conventions.
"""
import argparse
import os
import os.path as osp
import sys

import torch
from mmengine.config import DictAction

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from localmim.visualization.inputs import load_images, load_model, preprocess  # noqa: E402
from localmim.visualization.reconstruction import reconstruction_panels, save_reconstruction_figure  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='pretraining config')
    parser.add_argument('checkpoint', help="checkpoint file, or 'random'")
    parser.add_argument('--indices', type=int, nargs='+', default=[0, 1, 2, 3], help='Fashion-MNIST indices')
    parser.add_argument('--images', nargs='+', help='image files (instead of Fashion-MNIST)')
    parser.add_argument('--split', default='test', choices=['train', 'test'])
    parser.add_argument('--data-root', help='Fashion-MNIST folder (default: the config\'s)')
    parser.add_argument('--seed', type=int, default=0, help='seed of the random masks')
    parser.add_argument('--panel-px', type=int, default=384, help='rendered size of each panel')
    parser.add_argument('--out', default='reconstruction.png')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config entries')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    model, cfg = load_model(args.config, args.checkpoint, args.cfg_options)
    images, names = load_images(model.encoder.img_size, args.indices, args.images, args.data_root,
                                args.split, cfg)
    torch.manual_seed(args.seed)
    panels = reconstruction_panels(model, preprocess(model, images), images, args.panel_px)
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    title = f'{osp.basename(args.config)} | {osp.basename(str(args.checkpoint))}'
    save_reconstruction_figure(panels, names, args.out, title=title)
    print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
