#!/usr/bin/env python
"""The main job: pretrain LocalMIM and its global-only baseline, then measure how they transfer.

On Fashion-MNIST (Debian package ``dataset-fashion-mnist``), in about 15 minutes on 2 CPU cores
(a GPU is used when present), through the same ``tools/*.py`` and ``mm_configs/`` a user runs:

1. pretrain a tiny ViT with LocalMIM (4 taps, HOG at 2/4/8/16 px cells) and with the global-only
   baseline (top block, one scale), same encoder, same number of steps;
2. for each: linear probe and short fine-tune on Fashion-MNIST classification (test-split top-1),
   Mask R-CNN on a COCO-format set of Fashion-MNIST canvases (bbox and segm AP), and UperNet on the
   same canvases in ADE20K format (mIoU);
3. write ``results.md`` (every metric, the time of every stage, pretraining images/s) and
   reconstruction pictures into the work dir.

    python tools/demo.py                       # what `make demo` runs
    python tools/demo.py --data-root DIR       # Fashion-MNIST idx files elsewhere
    python tools/demo.py --synthetic           # no Fashion-MNIST: generated blobs (stated in the table)
    python tools/demo.py --scale 0.2           # a smoke run: every stage 5x shorter
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEBIAN_ROOT = '/usr/share/datasets/fashion-mnist'

PRETRAIN = {  # name -> config
    'LocalMIM': 'mm_configs/pretrain/localmim_vit-tiny_fmnist.py',
    'global-only': 'mm_configs/pretrain/localmim_vit-tiny_global-only_fmnist.py',
}
# Downstream tasks: (name, config, metrics to report, options). ``{iters}``-style sizes scale with --scale.
TASKS = [
    ('linear probe', 'mm_configs/imagenet/vit-tiny_linprobe_fmnist.py', ['accuracy/top1'], 'classification'),
    ('fine-tune', 'mm_configs/imagenet/vit-tiny_ft_fmnist.py', ['accuracy/top1'], 'classification'),
    ('Mask R-CNN', 'mm_configs/coco/mask-rcnn_vit-tiny_simplefpn_fmnist-canvas.py',
     ['coco/bbox_mAP', 'coco/segm_mAP'], 'canvas'),
    ('UperNet', 'mm_configs/ade20k/upernet_vit-tiny_fmnist-canvas.py', ['mIoU'], 'canvas'),
]
# Sizes at --scale 1, chosen to fit 15 minutes on 2 cores (expected seconds drive the ETA).
SIZES = dict(pretrain_samples=6400, pretrain_epochs=3, cls_train_samples=6000, cls_val_samples=2000,
             probe_epochs=3, finetune_epochs=2, canvas_train=300, canvas_val=60, det_iters=60, seg_iters=80)
SMALLEST = dict(pretrain_samples=64, pretrain_epochs=2, cls_train_samples=256, cls_val_samples=64, probe_epochs=2,
                finetune_epochs=2, canvas_train=8, canvas_val=8, det_iters=2, seg_iters=2)  # for --scale < 1
EXPECTED_SECONDS = dict(data=8, pretrain=85, convert=6, **{'linear probe': 50, 'fine-tune': 75,
                                                           'Mask R-CNN': 70, 'UperNet': 42, 'pictures': 17})


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--work-dir', default='work_dirs/demo')
    p.add_argument('--data-root', default=DEBIAN_ROOT, help='folder with the Fashion-MNIST idx files')
    p.add_argument('--synthetic', action='store_true', help='use generated blobs if Fashion-MNIST is missing')
    p.add_argument('--scale', type=float, default=1.0, help='multiply every stage length (0.2 = smoke run)')
    return p.parse_args()


class Progress:
    """Stage counter with elapsed time and an ETA from the expected stage lengths."""

    def __init__(self, stages):
        self.stages, self.done, self.start = stages, 0, time.time()
        self.expected_done = 0.0
        self.total = sum(EXPECTED_SECONDS[s[0]] for s in stages)

    def eta(self, stage_elapsed=0.0, stage_expected=0.0):
        elapsed = time.time() - self.start
        done = self.expected_done + min(stage_elapsed, stage_expected)
        speed = elapsed / done if done > 5 else 1.0  # this machine vs the expected stage lengths
        return elapsed, (self.total - done) * speed

    def begin(self, title):
        elapsed, remaining = self.eta()
        print(f'[{self.done + 1}/{len(self.stages)}] {title}  (elapsed {fmt(elapsed)}, ETA {fmt(remaining)})',
              flush=True)
        self.stage_start = time.time()

    def end(self, kind):
        self.done += 1
        self.expected_done += EXPECTED_SECONDS[kind]
        return time.time() - self.stage_start


def fmt(seconds):
    seconds = int(seconds)
    return f'{seconds // 60}:{seconds % 60:02d}'


def run(cmd, log_path, progress=None, kind=None):
    """Run a tool, logging everything to ``log_path`` and echoing mmengine's progress lines."""
    env = dict(os.environ, PYTHONPATH=f'{ROOT}{os.pathsep}{os.environ.get("PYTHONPATH", "")}')
    with open(log_path, 'w') as log:
        proc = subprocess.Popen([sys.executable, *cmd], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, bufsize=1)
        last_echo = 0.0
        for line in proc.stdout:
            log.write(line)
            if ('(train)' in line and 'eta:' in line) and time.time() - last_echo > 10:
                last_echo = time.time()
                step = re.search(r'(Epoch|Iter)\(train\)\s*(\[[^\]]*\])?\s*\[[^\]]*\]', line)
                loss = re.search(r'\bloss: ([\d.e+-]+)', line)
                stage_eta = ''
                if progress is not None:
                    _, remaining = progress.eta(time.time() - progress.stage_start, EXPECTED_SECONDS[kind])
                    stage_eta = f', demo ETA {fmt(remaining)}'
                print(f'      {step.group(0) if step else ""} loss {loss.group(1) if loss else "?"}{stage_eta}',
                      flush=True)
        if proc.wait():
            lines = open(log_path).read().splitlines()
            errors = [line for line in lines if line.startswith('error:') or 'Error' in line.split(':')[0]]
            raise SystemExit(f'error: {" ".join(cmd[:2])} failed (log: {log_path}): '
                             + (errors[-1] if errors else '\n'.join(lines[-15:])))


def last_scalars(work_dir):
    """The last logged value of every scalar in an mmengine work dir (vis_data/scalars.json)."""
    values = {}
    for path in sorted(Path(work_dir).glob('*/vis_data/scalars.json')):
        for line in path.read_text().splitlines():
            values.update(json.loads(line))
    return values


def train_times(work_dir):
    """Per-iteration 'time' values logged during training."""
    times = []
    for path in sorted(Path(work_dir).glob('*/vis_data/scalars.json')):
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            if 'time' in entry and 'loss' in entry:
                times.append(entry['time'])
    return times


def task_options(task, sizes, data_root, backbone, length):
    """--cfg-options for one downstream task of ``length`` epochs (classification) or iterations:
    the pretrained backbone, the data, and the schedule shortened to that length."""
    init = ['model.backbone.init_cfg.type=Pretrained', f'model.backbone.init_cfg.checkpoint={backbone}',
            'model.backbone.init_cfg.prefix=backbone.']
    if task in ('linear probe', 'fine-tune'):  # 1 warm-up epoch, then cosine to the end
        return init + [
            f'train_dataloader.dataset.data_root={data_root}', f'val_dataloader.dataset.data_root={data_root}',
            f'test_dataloader.dataset.data_root={data_root}',
            f'train_dataloader.dataset.num_samples={sizes["cls_train_samples"]}',
            f'val_dataloader.dataset.num_samples={sizes["cls_val_samples"]}',
            f'train_cfg.max_epochs={length}', f'train_cfg.val_interval={length}', f'param_scheduler.1.end={length}']
    warmup = max(1, min(50, length // 5))
    options = init + [f'train_cfg.max_iters={length}', f'train_cfg.val_interval={length}',
                      f'param_scheduler.0.end={warmup}', f'param_scheduler.1.end={length}']
    if task == 'Mask R-CNN':  # step decay at 80% and 95%
        return options + [f'param_scheduler.1.milestones=[{int(0.8 * length)},{int(0.95 * length)}]']
    return options + [f'param_scheduler.1.begin={warmup}']  # UperNet: poly after the warm-up


def main():
    args = parse_args()
    work = Path(args.work_dir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    sizes = {k: max(SMALLEST[k], round(v * args.scale)) for k, v in SIZES.items()}

    from localmim.datasets.fashion_mnist import find_fashion_mnist_file
    data_root, data_note = args.data_root, f'Fashion-MNIST ({args.data_root})'
    try:
        find_fashion_mnist_file(data_root, 'train-images-idx3-ubyte')
    except (FileNotFoundError, OSError):
        if not args.synthetic:
            raise SystemExit(
                f'error: Fashion-MNIST not found in {data_root}.\n'
                '  Install it with `sudo apt-get install dataset-fashion-mnist` (files land in '
                f'{DEBIAN_ROOT}),\n  or pass --data-root DIR with the four idx files, '
                'or --synthetic to run on generated blobs.')
        from localmim.datasets.synthetic import write_synthetic_fashion_mnist
        data_root = write_synthetic_fashion_mnist(str(work / 'data' / 'synthetic-fashion-mnist'))
        data_note = 'GENERATED blobs (--synthetic; Fashion-MNIST was not found): numbers are a smoke test only'

    stages = [('data', 'generate canvases')] + [('pretrain', n) for n in PRETRAIN] + [
        ('convert', n) for n in PRETRAIN] + [(task[0], n) for n in PRETRAIN for task in TASKS] + [('pictures', '')]
    progress = Progress(stages)
    device = 'GPU' if __import__('torch').cuda.is_available() else f'CPU ({os.cpu_count()} cores)'
    print(f'LocalMIM demo on {device}; data: {data_note}; work dir {work}', flush=True)
    times, metrics, speeds = {}, {}, {}

    progress.begin('Fashion-MNIST canvases in COCO and ADE20K format')
    canvas_root = work / 'data' / 'fmnist_canvas'
    os.environ['FMNIST_CANVAS_ROOT'] = str(canvas_root)  # the canvas configs read it
    run(['tools/make_fmnist_detection.py', '--out', str(canvas_root), '--num-train', str(sizes['canvas_train']),
         '--num-val', str(sizes['canvas_val']), '--data-root', data_root, '--seed', '0'], work / 'data.log')
    times['data'] = progress.end('data')

    for name, config in PRETRAIN.items():
        progress.begin(f'pretrain {name}: {config}')
        wd = work / f'pretrain_{name}'
        epochs = sizes['pretrain_epochs']
        run(['tools/train.py', config, '--work-dir', str(wd), '--cfg-options',
             f'train_dataloader.dataset.data_root={data_root}',
             f'train_dataloader.dataset.num_samples={sizes["pretrain_samples"]}', f'train_cfg.max_epochs={epochs}',
             f'param_scheduler.1.T_max={max(epochs - 1, 1)}', f'param_scheduler.1.end={epochs}'],
            wd.with_suffix('.log'), progress, 'pretrain')
        times[('pretrain', name)] = progress.end('pretrain')
        iter_times = train_times(wd)
        iter_times = iter_times[2:] or iter_times  # skip warm-up iterations when there are more
        batch = 64
        speeds[name] = batch * len(iter_times) / sum(iter_times) if iter_times else float('nan')

    backbones = {}
    for name in PRETRAIN:
        progress.begin(f'convert {name} to a backbone checkpoint')
        wd = work / f'pretrain_{name}'
        ckpt = (wd / 'last_checkpoint').read_text().strip()
        backbones[name] = str(work / f'{name}_backbone.pth')
        run(['tools/convert_checkpoint.py', ckpt, backbones[name]], work / f'convert_{name}.log')
        times[('convert', name)] = progress.end('convert')

    for name in PRETRAIN:
        for task, config, keys, _ in TASKS:
            progress.begin(f'{task} from {name}: {config}')
            length = {'linear probe': sizes['probe_epochs'], 'fine-tune': sizes['finetune_epochs'],
                      'Mask R-CNN': sizes['det_iters'], 'UperNet': sizes['seg_iters']}[task]
            wd = work / f'{task.replace(" ", "-").lower()}_{name}'
            run(['tools/train.py', config, '--work-dir', str(wd), '--cfg-options',
                 *task_options(task, sizes, data_root, backbones[name], length)],
                wd.with_suffix('.log'), progress, task)
            times[(task, name)] = progress.end(task)
            scalars = last_scalars(wd)
            for key in keys:
                metrics[(task, key, name)] = scalars.get(key, float('nan'))

    progress.begin('reconstruction pictures')
    pictures = []
    for name, config in PRETRAIN.items():
        ckpt = (work / f'pretrain_{name}' / 'last_checkpoint').read_text().strip()
        out = work / f'reconstruction_{name}.png'
        run(['tools/visualize_reconstruction.py', config, ckpt, '--out', str(out), '--data-root', data_root,
             '--indices', '0', '1', '2', '3'], work / f'pictures_{name}.log')
        pictures.append(out.name)
    times['pictures'] = progress.end('pictures')

    table = results_table(metrics, times, speeds, data_note, device, sizes, pictures,
                          time.time() - progress.start)
    (work / 'results.md').write_text(table)
    print('\n' + table, flush=True)
    print(f'saved {work / "results.md"}', flush=True)


def results_table(metrics, times, speeds, data_note, device, sizes, pictures, total):
    names = list(PRETRAIN)
    lines = ['# LocalMIM transfer demo', '', f'Data: {data_note}. Device: {device}. Total time {fmt(total)}.', '',
             '| stage | metric | ' + ' | '.join(names) + ' | time (' + ' / '.join(names) + ') |',
             '|---|---|' + '---|' * len(names) + '---|',
             f'| pretraining ({sizes["pretrain_epochs"]} epochs x {sizes["pretrain_samples"]} images) | images/s | '
             + ' | '.join(f'{speeds[n]:.1f}' for n in names) + ' | '
             + ' / '.join(fmt(times[('pretrain', n)]) for n in names) + ' |']
    for task, _, keys, _ in TASKS:
        for key in keys:
            scale = 100 if key.startswith('coco/') else 1
            unit = 'AP' if key.startswith('coco/') else ''
            lines.append(f'| {task} | {key}{" " + unit if unit else ""} | '
                         + ' | '.join(f'{metrics[(task, key, n)] * scale:.2f}' for n in names) + ' | '
                         + ' / '.join(fmt(times[(task, n)]) for n in names) + ' |')
    lines += ['', 'Every number above is what this run produced. Classification: Fashion-MNIST test split '
              f'({sizes["cls_val_samples"]} images); detection and segmentation: {sizes["canvas_val"]} '
              'validation canvases.', '', 'Reconstructions: ' + ', '.join(pictures), '']
    return '\n'.join(lines)


if __name__ == '__main__':
    main()
