"""Per-layer attention analysis of one or more ViT checkpoints: mean attention distance and NMI.

    python tools/analyze_attention.py \\
        --model LocalMIM mm_configs/pretrain/localmim_vit-tiny_fmnist.py work_dirs/localmim.pth \\
        --model global-only mm_configs/pretrain/localmim_vit-tiny_global-only_fmnist.py work_dirs/global.pth \\
        [--indices 0 1 ... | --num-images 64 | --images a.png ...] [--split test] [--data-root DIR]
        [--out-dir attention_analysis] [--batch-size 8]

Each ``--model NAME CONFIG CHECKPOINT`` (CHECKPOINT may be ``random``) is analysed on the same
full, unmasked images. Writes ``attention_stats.csv`` (model, layer, head or 'mean', distance, NMI)
and ``attention_stats.png`` into ``--out-dir``. Definitions: ``localmim/visualization/attention.py``.
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from localmim.visualization.attention import (attention_statistics, find_vit, plot_statistics,  # noqa: E402
                                              write_statistics_csv)
from localmim.visualization.inputs import load_images, load_model, preprocess  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model', nargs=3, action='append', required=True, metavar=('NAME', 'CONFIG', 'CHECKPOINT'),
                        help="a model to analyse (repeatable); CHECKPOINT may be 'random'")
    parser.add_argument('--indices', type=int, nargs='+', help='Fashion-MNIST indices')
    parser.add_argument('--num-images', type=int, default=64, help='first N Fashion-MNIST images (no --indices)')
    parser.add_argument('--images', nargs='+', help='image files (instead of Fashion-MNIST)')
    parser.add_argument('--split', default='test', choices=['train', 'test'])
    parser.add_argument('--data-root', help="Fashion-MNIST folder (default: the first config's)")
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--out-dir', default='attention_analysis')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    names = [name for name, _, _ in args.model]
    if len(set(names)) != len(names):
        raise ValueError(f'--model names must be distinct, got {names}')
    indices = args.indices if args.indices is not None else range(args.num_images)
    stats = {}
    for name, config, checkpoint in args.model:
        model, cfg = load_model(config, checkpoint)
        encoder = find_vit(model)
        images, _ = load_images(encoder.img_size, indices, args.images, args.data_root, args.split, cfg)
        stats[name] = attention_statistics(encoder, preprocess(model, images), args.batch_size)
        per_layer = ', '.join(f'{d:.1f}px/{n:.3f}' for d, n in zip(stats[name]['distance'].mean(1),
                                                                 stats[name]['nmi'].mean(1)))
        print(f'{name}: distance/NMI per layer: {per_layer}')
    os.makedirs(args.out_dir, exist_ok=True)
    csv_path = write_statistics_csv(stats, osp.join(args.out_dir, 'attention_stats.csv'))
    png_path = plot_statistics(stats, osp.join(args.out_dir, 'attention_stats.png'),
                               title=f'{len(images)} images, patch tokens only')
    print(f'wrote {csv_path} and {png_path}')


if __name__ == '__main__':
    main()
