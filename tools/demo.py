#!/usr/bin/env python
"""The main job: pretrain LocalMIM and its global-only baseline, then measure how they transfer.

On Fashion-MNIST (Debian package ``dataset-fashion-mnist``), through the same ``tools/*.py`` and
``mm_configs/`` a user runs, in about 21 minutes on 2 quiet CPU cores (set-up excluded; measured
2026-12-04, over the 15-minute target: the sizes still need rebalancing); with a
GPU the same command runs longer schedules (``GPU_SIZES``) and says so:

1. pretrain a tiny ViT with LocalMIM (4 taps, HOG at 2/4/8/16 px cells) and with the global-only
   baseline (top block, one scale), same encoder, same number of steps;
2. for each, and for the same encoder at random initialisation (the reference row):
   - linear probe on frozen features extracted once (``tools/linear_probe.py``,
     ``mm_configs/imagenet/vit-tiny_linprobe-features_fmnist.py``; two random encoders of
     different seeds give the run-to-run noise of this stage),
   - a short fine-tune (``mm_configs/imagenet/vit-tiny_ft-short_fmnist.py``, no ImageNet
     regularisation),
   - Mask R-CNN and UperNet on Fashion-MNIST canvases (pretrained encoders only: the budget);
3. write ``results.md`` and ``results.html`` (the table, the time of every stage, pretraining
   images/s, the loss curves, reconstructions at every scale, detection and segmentation
   predictions) into the work dir.

    python tools/demo.py                       # what `make demo` runs
    python tools/demo.py --data-root DIR       # Fashion-MNIST idx files elsewhere
    python tools/demo.py --synthetic           # no Fashion-MNIST: generated blobs (stated in the table)
    python tools/demo.py --scale 0.2           # every stage 5x shorter
    python tools/demo.py --cpu                 # the CPU sizes even where a GPU is present

Every stage shows a progress bar whose ETA (of the stage and of the whole demo) is calibrated
from the iterations measured so far.
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
RANDOM = 'random init'
PROBE_CONFIG = 'mm_configs/imagenet/vit-tiny_linprobe-features_fmnist.py'
FINETUNE_CONFIG = 'mm_configs/imagenet/vit-tiny_ft-short_fmnist.py'
DET_CONFIG = 'mm_configs/coco/mask-rcnn_vit-tiny_simplefpn_fmnist-canvas.py'
SEG_CONFIG = 'mm_configs/ade20k/upernet_vit-tiny_fmnist-canvas.py'
# Sizes at --scale 1 for 2 CPU cores: pretraining and downstream lengths in iterations (batch 64
# for pretraining and fine-tune, 4 canvases for detection and segmentation).
CPU_SIZES = dict(pretrain_iters=400, probe_train=10000, probe_test=5000, finetune_iters=200, finetune_val=5000,
                 canvas_train=1000, canvas_val=100, det_iters=80, seg_iters=100)
# With a GPU (H200-class): about 15 minutes as well, every stage longer.
GPU_SIZES = dict(pretrain_iters=6000, probe_train=60000, probe_test=10000, finetune_iters=3000, finetune_val=10000,
                 canvas_train=4000, canvas_val=500, det_iters=3000, seg_iters=3000)
SMALLEST = dict(pretrain_iters=2, probe_train=64, probe_test=64, finetune_iters=2, finetune_val=64,
                canvas_train=8, canvas_val=4, det_iters=2, seg_iters=2)
# Seconds on 2 quiet CPU cores: per stage start-up + per unit of work (the ETA's prior; the bar
# replaces it by the measured rate as soon as a stage has logged iterations).
COST = dict(data=(4, 0.004), pretrain=(10, 0.27), convert=(5, 0), probe=(10, 0.002), finetune=(10, 0.33),
            det=(15, 0.75), seg=(12, 0.3), pictures=(15, 0))
VAL_COST = dict(finetune=0.002, det=0.15, seg=0.1)  # seconds per validation image


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--work-dir', default='work_dirs/demo')
    p.add_argument('--data-root', default=DEBIAN_ROOT, help='folder with the Fashion-MNIST idx files')
    p.add_argument('--synthetic', action='store_true', help='use generated blobs if Fashion-MNIST is missing')
    p.add_argument('--scale', type=float, default=1.0, help='multiply every stage length (0.2 = smoke run)')
    p.add_argument('--cpu', action='store_true', help='CPU sizes even where a GPU is present')
    return p.parse_args()


def fmt(seconds):
    seconds = int(max(seconds, 0))
    return f'{seconds // 60}:{seconds % 60:02d}'


class Stage:
    """One step of the demo: a tool run with ``units`` of work (iterations or images)."""

    def __init__(self, kind, name, units, val_units=0):
        self.kind, self.name, self.units, self.val_units = kind, name, units, val_units
        start, per_unit = COST[kind]
        self.expected = start + per_unit * units + VAL_COST.get(kind, 0) * val_units
        self.seconds = None


class Plan:
    """All stages, with the demo-wide ETA: expected seconds of the remaining stages times the
    measured slowness of this machine (elapsed / expected of the work done so far)."""

    def __init__(self, stages):
        self.stages, self.start = stages, time.time()

    def slowness(self, current=None, fraction=0.0, stage_elapsed=0.0):
        done = [s for s in self.stages if s.seconds is not None]
        expected = sum(s.expected for s in done) + (current.expected * fraction if current else 0)
        spent = sum(s.seconds for s in done) + (stage_elapsed if current else 0)
        return spent / expected if expected > 5 else 1.0

    def remaining(self, current, fraction, stage_elapsed, stage_left):
        """Seconds left in the whole demo given the current stage's own estimate ``stage_left``."""
        later = sum(s.expected for s in self.stages if s.seconds is None and s is not current)
        return stage_left + later * self.slowness(current, fraction, stage_elapsed)

    def number(self, stage):
        return f'[{self.stages.index(stage) + 1}/{len(self.stages)}]'


PROGRESS_PATTERNS = [  # mmengine training log lines, tools/linear_probe.py --progress lines
    (re.compile(r'Epoch\(train\)\s*\[(\d+)\]\[\s*(\d+)/(\d+)\]'), 'epoch'),
    (re.compile(r'Iter\(train\)\s*\[\s*(\d+)/(\d+)\]'), 'iter'),
    (re.compile(r'^extract .* \[(\d+)/(\d+)\]'), 'batch'),
]


def parse_progress(line, state):
    """Update ``state['done']`` (work units done, monotone) from one log line; True if it moved."""
    for pattern, kind in PROGRESS_PATTERNS:
        m = pattern.search(line)
        if not m:
            continue
        if kind == 'epoch':
            epoch, it, per_epoch = (int(g) for g in m.groups())
            done = (epoch - 1) * per_epoch + it
        elif kind == 'iter':
            done = int(m.group(1))
        else:  # extraction batches: count them across checkpoints and splits
            state['batches'] = state.get('batches', 0) + 1
            done = state['batches']
        loss = re.search(r'\bloss: ([\d.e+-]+)', line)
        if loss:
            state['loss'] = float(loss.group(1))
        if done > state['done']:
            state['done'] = done
            return True
    return False


def run(cmd, log_path, plan=None, stage=None, total=None):
    """Run a tool, logging everything to ``log_path``, with a progress bar over ``total`` units
    (iterations or batches) read from the tool's log lines."""
    from tqdm import tqdm
    env = dict(os.environ, PYTHONPATH=f'{ROOT}{os.pathsep}{os.environ.get("PYTHONPATH", "")}')
    start = time.time()
    bar = None
    if plan is not None:
        bar = tqdm(total=total or 1, desc=f'{plan.number(stage)} {stage.name}'[:48], unit='it', file=sys.stdout,
                   mininterval=1.0, leave=True,
                   bar_format='{desc} {bar:24} {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]')
    state = dict(done=0)
    first = None  # (time, units done) of the first logged progress: excludes the start-up
    with open(log_path, 'w') as log:
        proc = subprocess.Popen([sys.executable, *cmd], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, bufsize=1)
        for line in proc.stdout:
            log.write(line)
            if bar is None or not parse_progress(line, state):
                continue
            now = time.time()
            if first is None:
                first = (now, state['done'])
            done = min(state['done'], bar.total)
            bar.update(done - bar.n)
            fraction = done / bar.total
            if now > first[0] and done > first[1]:  # measured rate since the first logged units
                stage_left = (bar.total - done) * (now - first[0]) / (done - first[1])
            else:
                stage_left = stage.expected * (1 - fraction) * plan.slowness(stage, fraction, now - start)
            total_left = plan.remaining(stage, fraction, now - start, stage_left)
            loss = f'loss {state["loss"]:.3f}, ' if 'loss' in state else ''
            bar.set_postfix_str(f'{loss}stage ETA {fmt(stage_left)}, demo ETA {fmt(total_left)}', refresh=True)
        code = proc.wait()
    if bar is not None:
        bar.update(bar.total - bar.n)
        bar.close()
    if code:
        lines = open(log_path).read().splitlines()
        errors = [line for line in lines if line.startswith('error:') or 'Error' in line.split(':')[0]]
        raise SystemExit(f'error: {" ".join(cmd[:2])} failed (log: {log_path}): '
                         + (errors[-1] if errors else '\n'.join(lines[-15:])))
    if stage is not None:
        stage.seconds = time.time() - start
    return time.time() - start


def call_tool(script, argv, log_path, plan=None, stage=None):
    """Run ``tools/<script>``'s ``main(argv)`` inside this process (the light tools: no runner, no
    second import of torch), its output going to ``log_path``."""
    import contextlib
    import importlib.util
    start = time.time()
    spec = importlib.util.spec_from_file_location(f'demo_tool_{Path(script).stem}', ROOT / script)
    module = importlib.util.module_from_spec(spec)
    with open(log_path, 'w') as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        try:
            spec.loader.exec_module(module)
            module.main(argv)
        except (Exception, SystemExit) as error:
            if isinstance(error, SystemExit) and not error.code:
                pass
            else:
                raise SystemExit(f'error: {script} failed (log: {log_path}): {error}')
    if stage is not None:
        stage.seconds = time.time() - start
        print(f'{plan.number(stage)} {stage.name}: done in {fmt(stage.seconds)}', flush=True)


def scalars(work_dir):
    """Every logged entry of an mmengine work dir (vis_data/scalars.json), in order."""
    entries = []
    for path in sorted(Path(work_dir).glob('*/vis_data/scalars.json')):
        entries += [json.loads(line) for line in path.read_text().splitlines()]
    return entries


def last_scalars(work_dir):
    values = {}
    for entry in scalars(work_dir):
        values.update(entry)
    return values


def images_per_second(work_dir, batch=64):
    """Pretraining throughput from the logged per-iteration times (the first two entries skipped
    when there are more: warm-up)."""
    times = [e['time'] for e in scalars(work_dir) if 'time' in e and 'loss' in e]
    times = times[2:] or times
    return batch * len(times) / sum(times) if times else float('nan')


def init_options(backbone):
    return ['model.backbone.init_cfg.type=Pretrained', f'model.backbone.init_cfg.checkpoint={backbone}',
            'model.backbone.init_cfg.prefix=backbone.']


def main():
    args = parse_args()
    import torch
    work = Path(args.work_dir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    gpu = torch.cuda.is_available() and not args.cpu
    base = GPU_SIZES if gpu else CPU_SIZES
    sizes = {k: max(SMALLEST[k], round(v * args.scale)) for k, v in base.items()}
    if gpu:
        device = f'GPU ({torch.cuda.get_device_name(0)}): longer schedules than on CPU (GPU_SIZES in tools/demo.py)'
    else:
        device = f'CPU ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)'

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

    encoders = [RANDOM, *PRETRAIN]
    probe_names = [RANDOM, f'{RANDOM} (seed 1)', *PRETRAIN]
    st = {'data': Stage('data', 'canvases (COCO + ADE20K format)', sizes['canvas_train'] + sizes['canvas_val'])}
    st.update({('pretrain', n): Stage('pretrain', f'pretrain {n}', sizes['pretrain_iters']) for n in PRETRAIN})
    st.update({('convert', n): Stage('convert', f'convert {n}', 0) for n in PRETRAIN})
    st['probe'] = Stage('probe', f'linear probe ({len(probe_names)} encoders)',
                        len(probe_names) * (sizes['probe_train'] + sizes['probe_test']))
    st.update({('finetune', n): Stage('finetune', f'fine-tune {n}', sizes['finetune_iters'], sizes['finetune_val'])
               for n in encoders})
    st.update({('det', n): Stage('det', f'Mask R-CNN {n}', sizes['det_iters'], sizes['canvas_val']) for n in PRETRAIN})
    st.update({('seg', n): Stage('seg', f'UperNet {n}', sizes['seg_iters'], sizes['canvas_val']) for n in PRETRAIN})
    st['pictures'] = Stage('pictures', 'pictures', 0)
    plan = Plan(list(st.values()))
    expected_total = sum(s.expected for s in plan.stages)
    print(f'LocalMIM demo on {device}; data: {data_note}; work dir {work}', flush=True)
    print(f'{len(plan.stages)} stages, about {fmt(expected_total)} on 2 quiet CPU cores at this size '
          '(the bars calibrate the ETA on this machine)', flush=True)
    metrics = {}

    canvas_root = work / 'data' / 'fmnist_canvas'
    os.environ['FMNIST_CANVAS_ROOT'] = str(canvas_root)  # the canvas configs read it
    call_tool('tools/make_fmnist_detection.py', [
        '--out', str(canvas_root), '--num-train', str(sizes['canvas_train']), '--num-val', str(sizes['canvas_val']),
        '--data-root', data_root, '--seed', '0'], work / 'data.log', plan, st['data'])

    log_every = f'default_hooks.logger.interval={max(1, min(20, sizes["pretrain_iters"] // 40))}'
    speeds, curves = {}, {}
    for name, config in PRETRAIN.items():
        wd = work / f'pretrain_{name}'
        iters = sizes['pretrain_iters']
        num_samples = 64 * max(1, iters // 4)  # 4 epochs of iters / 4 batches of 64
        run(['tools/train.py', config, '--work-dir', str(wd), '--max-epochs', '4', '--cfg-options',
             f'train_dataloader.dataset.data_root={data_root}', f'train_dataloader.dataset.num_samples={num_samples}',
             log_every], wd.with_suffix('.log'), plan, st[('pretrain', name)], 4 * (num_samples // 64))
        speeds[name] = images_per_second(wd)
        curves[name] = [(e['iter'], e['loss']) for e in scalars(wd) if 'loss' in e and 'iter' in e]

    backbones = {RANDOM: 'random'}
    for name in PRETRAIN:
        ckpt = (work / f'pretrain_{name}' / 'last_checkpoint').read_text().strip()
        backbones[name] = str(work / f'{name}_backbone.pth')
        call_tool('tools/convert_checkpoint.py', [ckpt, backbones[name]], work / f'convert_{name}.log', plan,
                  st[('convert', name)])

    wd = work / 'linear_probe'
    batches = sum(-(-sizes[k] // 256) for k in ('probe_train', 'probe_test')) * len(probe_names)
    run(['tools/linear_probe.py', PROBE_CONFIG, 'random', 'random:1', *[backbones[n] for n in PRETRAIN],
         '--names', *probe_names, '--work-dir', str(wd), '--progress', '--cfg-options',
         *[f'probe_{split}_dataloader.dataset.data_root={data_root}' for split in ('train', 'test')],
         f'probe_train_dataloader.dataset.num_samples={sizes["probe_train"]}',
         f'probe_test_dataloader.dataset.num_samples={sizes["probe_test"]}'], wd.with_suffix('.log'), plan,
        st['probe'], batches)
    probe = json.loads((wd / 'linear_probe.json').read_text())
    for name in encoders:
        metrics[('linear probe', 'top-1 %', name)] = probe[name]['top1']
    noise = abs(probe[RANDOM]['top1'] - probe[f'{RANDOM} (seed 1)']['top1'])

    n = sizes['finetune_iters']
    for name in encoders:
        wd = work / f'fine-tune_{name.replace(" ", "-")}'
        run(['tools/train.py', FINETUNE_CONFIG, '--work-dir', str(wd), '--max-iters', str(n), '--cfg-options',
             *(init_options(backbones[name]) if name != RANDOM else []),
             *[f'{k}_dataloader.dataset.data_root={data_root}' for k in ('train', 'val', 'test')],
             f'val_dataloader.dataset.num_samples={sizes["finetune_val"]}', f'train_cfg.val_interval={n}',
             f'default_hooks.checkpoint.interval={n}', f'default_hooks.logger.interval={max(1, min(20, n // 20))}'],
            wd.with_suffix('.log'), plan, st[('finetune', name)], n)
        metrics[('fine-tune', 'top-1 %', name)] = last_scalars(wd).get('accuracy/top1', float('nan'))

    for kind, task, config, keys in (('det', 'Mask R-CNN', DET_CONFIG, [('coco/bbox_mAP', 'bbox AP'),
                                                                          ('coco/segm_mAP', 'mask AP')]),
                                     ('seg', 'UperNet', SEG_CONFIG, [('mIoU', 'mIoU')])):
        n = sizes[f'{kind}_iters']
        for name in PRETRAIN:
            wd = work / f'{task.replace(" ", "-")}_{name}'
            draw = ['default_hooks.visualization.draw=True',
                    f'default_hooks.visualization.interval={max(1, sizes["canvas_val"] // 4)}']
            if kind == 'seg':
                draw[1] = f'default_hooks.visualization.interval={max(1, sizes["canvas_val"] // 4)}'
            run(['tools/train.py', config, '--work-dir', str(wd), '--max-iters', str(n), '--cfg-options',
                 *init_options(backbones[name]), f'train_cfg.val_interval={n}',
                 f'default_hooks.checkpoint.interval={n}',
                 f'default_hooks.logger.interval={max(1, min(20, n // 20))}', *draw],
                wd.with_suffix('.log'), plan, st[(kind, name)], n)
            values = last_scalars(wd)
            for key, label in keys:
                scale = 100 if key.startswith('coco/') else 1
                metrics[(task, label, name)] = values.get(key, float('nan')) * scale

    start = time.time()
    pictures = {}
    for name, config in PRETRAIN.items():
        ckpt = (work / f'pretrain_{name}' / 'last_checkpoint').read_text().strip()
        out = work / f'reconstruction_{name}.png'
        call_tool('tools/visualize_reconstruction.py', [
            config, ckpt, '--out', str(out), '--data-root', data_root, '--indices', '0', '1', '2', '3'],
            work / f'pictures_{name}.log')
        pictures[f'reconstruction {name}'] = out.name
    for task in ('Mask-R-CNN', 'UperNet'):
        found = sorted((work / f'{task}_LocalMIM').glob('*/vis_data/vis_image/*.png'))[:2]
        for i, path in enumerate(found):
            target = work / f'predictions_{task}_LocalMIM_{i}.png'
            target.write_bytes(path.read_bytes())
            pictures[f'{task} predictions (LocalMIM, left ground truth, right prediction) {i}'] = target.name
    plot_curves(curves, work / 'loss_curves.png')
    pictures = {'pretraining loss curves': 'loss_curves.png', **pictures}
    st['pictures'].seconds = time.time() - start
    print(f'{plan.number(st["pictures"])} pictures: done in {fmt(st["pictures"].seconds)}', flush=True)

    times = {key: s.seconds for key, s in st.items()}
    table = results_table(metrics, times, speeds, noise, data_note, device, sizes, pictures,
                          time.time() - plan.start)
    (work / 'results.md').write_text(table)
    (work / 'results.html').write_text(markdown_to_html(table))
    print('\n' + table, flush=True)
    print(f'saved {work / "results.md"} and {work / "results.html"}', flush=True)


def plot_curves(curves, path):
    """Pretraining loss against iteration, one line per method."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 3), dpi=100)
    for name, points in curves.items():
        if points:
            ax.plot(*zip(*points), label=name)
    ax.set_xlabel('iteration')
    ax.set_ylabel('pretraining loss (sum over taps)')
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def results_table(metrics, times, speeds, noise, data_note, device, sizes, pictures, total):
    names = [RANDOM, *PRETRAIN]
    lines = ['# LocalMIM transfer demo', '', f'Data: {data_note}. Device: {device}. Total time {fmt(total)}.', '',
             '| stage | metric | ' + ' | '.join(names) + ' | LocalMIM - global-only | time ('
             + ' / '.join(names) + ') |',
             '|---|---|' + '---|' * len(names) + '---|---|',
             f'| pretraining ({sizes["pretrain_iters"]} iterations of 64 images) | images/s | - | '
             + ' | '.join(f'{speeds[n]:.1f}' for n in PRETRAIN) + ' | | - / '
             + ' / '.join(fmt(times[('pretrain', n)]) for n in PRETRAIN) + ' |']
    stage_keys = {'linear probe': 'probe', 'fine-tune': 'finetune', 'Mask R-CNN': 'det', 'UperNet': 'seg'}
    for task, metric in dict.fromkeys((t, m) for t, m, _ in metrics):
        values = [metrics.get((task, metric, n)) for n in names]
        diff = metrics[(task, metric, 'LocalMIM')] - metrics[(task, metric, 'global-only')]
        verdict = f'{diff:+.2f}'
        if task == 'linear probe' and abs(diff) <= noise:
            verdict += ' (within noise)'
        key = stage_keys[task]
        if key == 'probe':
            time_cell = f'{fmt(times["probe"])} for all'
        else:
            time_cell = ' / '.join(fmt(times[(key, n)]) if (key, n) in times else '-' for n in names)
        lines.append(f'| {task} | {metric} | ' + ' | '.join('-' if v is None else f'{v:.2f}' for v in values)
                     + f' | {verdict} | {time_cell} |')
    lines += ['', f'Run-to-run noise, measured once: two random-init encoders (seeds 0 and 1) under the linear '
              f'probe differ by {noise:.2f} points of top-1; differences below that are marked "within noise". '
              'The noise of the other stages was not measured in this run.', '',
              f'Classification: Fashion-MNIST test split (linear probe: {sizes["probe_test"]} images, features of '
              f'{sizes["probe_train"]} training images; fine-tune: {sizes["finetune_iters"]} iterations of 64, '
              f'{sizes["finetune_val"]} test images). Detection and segmentation: {sizes["det_iters"]} / '
              f'{sizes["seg_iters"]} iterations of 4 canvases, {sizes["canvas_val"]} validation canvases; '
              'pretrained encoders only (no random-init row: budget).', '',
              'Targets for the LocalMIM row at full length (issue 17): linear probe >= 80, fine-tune >= 88, '
              'bbox AP >= 30, mask AP >= 25, mIoU >= 50.', '']
    for title, name in pictures.items():
        lines += [f'## {title}', '', f'![{title}]({name})', '']
    return '\n'.join(lines)


def markdown_to_html(text):
    """The results page as HTML: headings, the table, paragraphs and pictures of ``results.md``."""
    import html
    out = ['<!doctype html><meta charset="utf-8"><title>LocalMIM demo</title>',
           '<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}'
           'td,th{border:1px solid #aaa;padding:3px 8px;text-align:right}img{max-width:100%}</style>']
    table = []
    for line in text.splitlines() + ['']:
        if line.startswith('|'):
            if not set(line) <= set('|-'):
                table.append([html.escape(c.strip()) for c in line.strip('|').split('|')])
            continue
        if table:
            out.append('<table>' + ''.join(
                '<tr>' + ''.join(f'<{t}>{c}</{t}>' for c in row) + '</tr>'
                for i, row in enumerate(table) for t in ['th' if i == 0 else 'td']) + '</table>')
            table = []
        m = re.fullmatch(r'!\[(.*)\]\((.*)\)', line)
        if line.startswith('#'):
            level = len(line) - len(line.lstrip('#'))
            out.append(f'<h{level}>{html.escape(line.lstrip("# "))}</h{level}>')
        elif m:
            out.append(f'<img alt="{html.escape(m.group(1))}" src="{html.escape(m.group(2))}">')
        elif line:
            out.append(f'<p>{html.escape(line)}</p>')
    return '\n'.join(out) + '\n'


if __name__ == '__main__':
    main()
