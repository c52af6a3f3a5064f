#!/usr/bin/env python
"""The main job: pretrain LocalMIM and its global-only baseline, then measure how they transfer.

On Fashion-MNIST (Debian package ``dataset-fashion-mnist``), through the same ``tools/*.py`` and
``mm_configs/`` a user runs, in about 15 minutes on 2 quiet CPU cores (set-up excluded); with a
GPU the same command runs longer schedules (``GPU_SIZES``) and says so:

1. pretrain a tiny ViT with LocalMIM (4 taps, HOG at 2/4/8/16 px cells) and with the global-only
   baseline (top block, one scale), same encoder, same number of steps;
2. for each, and for the same encoder at random initialisation (the reference row):
   - linear probe on frozen features extracted once (``tools/linear_probe.py``,
     ``mm_configs/imagenet/vit-tiny_linprobe-features_fmnist.py``; two random encoders of
     different seeds give the run-to-run noise of this stage, measured once for the CPU sizes
     and in the run at any other size),
   - a short fine-tune (``mm_configs/imagenet/vit-tiny_ft-short_fmnist.py``, no augmentation)
     that starts from the probe's fitted layer (LP-FT: ``tools/linear_probe.py --save-classifier``),
   - Mask R-CNN and UperNet on small Fashion-MNIST canvases (64 px, items at the pretraining
     scale: ``mm_configs/coco/mask-rcnn_vit-tiny_simplefpn_fmnist-canvas.py``,
     ``mm_configs/ade20k/upernet_vit-tiny_fmnist-canvas.py``);
3. write ``results.md`` and ``results.html`` (the table, the time of every stage, pretraining
   images/s, the loss curves, reconstructions at every scale, detection and segmentation
   predictions) into the work dir.

The stages are separate processes; on a CPU two run side by side with half the cores each (tiny
models use a second thread poorly: 1.5x for 2 threads against 2x for two processes), each
starting as soon as what it needs exists (a downstream stage waits for its encoder's conversion,
the canvas stages for the canvases).

    python tools/demo.py                       # what `make demo` runs
    python tools/demo.py --data-root DIR       # Fashion-MNIST idx files elsewhere
    python tools/demo.py --synthetic           # no Fashion-MNIST: generated blobs (stated in the table)
    python tools/demo.py --scale 0.2           # every stage 5x shorter
    python tools/demo.py --cpu                 # the CPU sizes even where a GPU is present

Every running stage shows a progress bar whose ETA (of the stage and of the whole demo) is
calibrated from the iterations measured so far.
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
ENCODERS = [RANDOM, *PRETRAIN]
PROBE_CONFIG = 'mm_configs/imagenet/vit-tiny_linprobe-features_fmnist.py'
FINETUNE_CONFIG = 'mm_configs/imagenet/vit-tiny_ft-short_fmnist.py'
DET_CONFIG = 'mm_configs/coco/mask-rcnn_vit-tiny_simplefpn_fmnist-canvas.py'
SEG_CONFIG = 'mm_configs/ade20k/upernet_vit-tiny_fmnist-canvas.py'
# The canvases of both dense tasks: 64 px with 1-3 items of 32-64 px, the scale the encoders were
# pretrained at (the configs' headers give the measurements), made by tools/make_fmnist_detection.py
# with these shape options into WORK/data/CANVAS_FOLDER; the configs read their root from CANVAS_ROOT.
CANVAS_SIZE, ITEM_SIZE, NUM_ITEMS = 64, (32, 64), (1, 3)
CANVAS_SHAPE = ['--canvas-size', str(CANVAS_SIZE), '--item-size', *map(str, ITEM_SIZE),
                '--num-items', *map(str, NUM_ITEMS)]
CANVAS_TEXT = f'{CANVAS_SIZE} px, {NUM_ITEMS[0]}-{NUM_ITEMS[1]} items of {ITEM_SIZE[0]}-{ITEM_SIZE[1]} px'
CANVAS_FOLDER, CANVAS_ROOT = 'fmnist_canvas_64', 'FMNIST_SMALL_CANVAS_ROOT'
# Sizes at --scale 1 for 2 CPU cores: pretraining and downstream lengths in iterations (batch 64
# for pretraining, finetune_batch for the fine-tune at the config's lr, 4 canvases for detection and
# segmentation; --scale changes no batch size). Every task runs from every encoder, random init
# included (the per-iteration costs are in COST).
CPU_SIZES = dict(pretrain_iters=360, probe_train=10000, probe_test=3000, finetune_iters=600, finetune_batch=16,
                 finetune_val=2500, canvas_train=600, canvas_val=100, det_iters=600, seg_iters=600)
# With a GPU (H200-class): about 15 minutes as well, every stage longer.
GPU_SIZES = dict(pretrain_iters=6000, probe_train=60000, probe_test=10000, finetune_iters=3000, finetune_batch=64,
                 finetune_val=10000, canvas_train=4000, canvas_val=500, det_iters=3000, seg_iters=3000)
SMALLEST = dict(pretrain_iters=2, probe_train=64, probe_test=64, finetune_iters=2, finetune_val=64,
                canvas_train=8, canvas_val=4, det_iters=2, seg_iters=2)
UNSCALED = ('finetune_batch',)  # sizes that --scale leaves alone
# Run-to-run spread measured once at the CPU sizes: the linear probe of two random-init encoders,
# seeds 0 and 1 (2026-12-05, 71.77 and 70.87; identical in every run since), and max - min over
# runs of the same LocalMIM encoder: Mask R-CNN seeds 0-2 (2026-12-05, 600 iterations on the small
# canvases: bbox 35.4, 38.6, 35.7, mask 41.2, 44.7, 42.3; random init seeds 0-1: 31.8, 33.7 and
# 36.4, 38.2), fine-tune seeds 0-2 (2026-12-05, 600 iterations of 16 from the probe's layer: 81.2,
# 81.4, 80.9), UperNet seeds 0 and 1 (2026-12-05, 600 iterations on the small canvases: 26.5, 24.3;
# random init 18.1, 17.7). At any other size the linear probe's noise is measured in the run
# instead (noise_measured_once).
ONCE_MEASURED_NOISE = {('linear probe', 'top-1 %'): 0.9, ('Mask R-CNN', 'bbox AP'): 3.2,
                       ('Mask R-CNN', 'mask AP'): 3.5, ('fine-tune', 'top-1 %'): 0.5, ('UperNet', 'mIoU'): 2.2}


def noise_measured_once(sizes):
    """Whether ONCE_MEASURED_NOISE holds for a run of these sizes (the CPU's at --scale 1, where it
    was measured). Elsewhere the run probes a second random encoder (seed 1) for the linear probe's
    noise, and the other spreads are unknown."""
    return sizes == CPU_SIZES


# Issue 17's targets for the LocalMIM row, and for a target missed at the CPU sizes the longest
# schedule measured once on a CPU (the demo's 360-iteration LocalMIM encoder, 1 thread), which the
# results page quotes next to a miss.
TARGETS = {('linear probe', 'top-1 %'): 80, ('fine-tune', 'top-1 %'): 88, ('Mask R-CNN', 'bbox AP'): 30,
           ('Mask R-CNN', 'mask AP'): 25, ('UperNet', 'mIoU'): 50}
CLOSEST = {('fine-tune', 'top-1 %'): '82.6 after 2,400 iterations of 16 (LP-FT, 2026-12-05)',
           ('UperNet', 'mIoU'): '39.7 after 1,200 iterations on the small canvases (2026-12-05)'}
# Seconds of one stage on 1 thread of a quiet CPU core, another stage running beside it: start-up +
# per unit of work (the ETA's prior; a bar replaces it by its measured rate as soon as the stage
# has logged progress twice). Fitted to the stage times of a clean-clone `make demo` (2026-12-05:
# 14:02 on the page, pretraining at 121.8 / 196.2 images/s; the prior summed to 14:03, and to 13:40
# without the second random-init probe, which the CPU sizes no longer run).
COST = dict(data=(5, 0.03), pretrain=(10, 0.42), convert=(8, 0), probe=(12, 0.0035), finetune=(10, 0.13),
            det=(12, 0.25), seg=(12, 0.1), pictures=(20, 0))
VAL_COST = dict(finetune=0.006, det=0.15, seg=0.03)  # seconds per validation image


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
    """One step of the demo: a tool run with ``units`` of work (iterations or images), waiting for
    the stages in ``after``. ``argv`` is the tool and its arguments (or a function returning them
    when the stage starts, for paths known only then); ``total`` the progress units its log lines
    count."""

    def __init__(self, kind, name, units, argv, log, total=None, val_units=0, after=()):
        self.kind, self.name, self.units, self.val_units = kind, name, units, val_units
        self.argv, self.log, self.total, self.after = argv, log, total or 1, list(after)
        start, per_unit = COST[kind]
        self.expected = start + per_unit * units + VAL_COST.get(kind, 0) * val_units
        self.seconds = None  # wall clock once finished
        self.started = self.first = self.proc = self.bar = self.log_file = None
        self.state = dict(done=0)

    def left(self, plan, now):
        """Seconds this running stage still needs: its measured rate once its log has shown
        progress twice, else the prior times the machine's measured slowness."""
        done = min(self.state['done'], self.total)
        if self.first and now > self.first[0] and done > self.first[1]:
            return (self.total - done) * (now - self.first[0]) / (done - self.first[1])
        fraction = done / self.total
        return self.expected * (1 - fraction) * plan.slowness(self, fraction, now - self.started)


class Plan:
    """All stages and the demo-wide ETA: the running stages' own estimates plus the expected
    seconds of the stages not started, times the measured slowness of this machine (elapsed /
    expected over the work done so far), shared among the parallel slots."""

    def __init__(self, stages, slots):
        self.stages, self.slots, self.start = stages, slots, time.time()

    def slowness(self, current=None, fraction=0.0, stage_elapsed=0.0):
        done = [s for s in self.stages if s.seconds is not None]
        expected = sum(s.expected for s in done) + (current.expected * fraction if current else 0)
        spent = sum(s.seconds for s in done) + (stage_elapsed if current else 0)
        return spent / expected if expected > 5 else 1.0

    def remaining(self, now):
        running = [s.left(self, now) for s in self.stages if s.started and s.seconds is None]
        later = sum(s.expected for s in self.stages if not s.started) * self.slowness()
        return max(max(running, default=0), (sum(running) + later) / self.slots)

    def number(self, stage):
        return f'[{self.stages.index(stage) + 1}/{len(self.stages)}]'

    def priority(self, stage):
        """Start first the ready stage that unlocks the most work (its own expected seconds plus
        those of every stage waiting on it, directly or not)."""
        return stage.expected + sum(self.priority(s) for s in self.stages if stage in s.after)


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



def run_stages(plan, threads):
    """Run every stage as a subprocess, ``plan.slots`` at a time, each with ``threads`` torch
    threads, a stage starting when the stages it waits for have finished. One progress bar per
    running stage; a line per finished stage. A failing stage stops the demo with its error."""
    import queue
    import threading
    from tqdm import tqdm
    env = dict(os.environ, PYTHONPATH=f'{ROOT}{os.pathsep}{os.environ.get("PYTHONPATH", "")}',
               OMP_NUM_THREADS=str(threads))
    lines, free = queue.Queue(), list(range(plan.slots))

    def read(stage):  # one thread per running stage: its output lines into the queue
        for line in stage.proc.stdout:
            lines.put((stage, line))
        lines.put((stage, None))

    def start(stage):
        argv = stage.argv() if callable(stage.argv) else stage.argv
        stage.slot, stage.started = free.pop(0), time.time()
        stage.bar = tqdm(total=stage.total, desc=f'{plan.number(stage)} {stage.name}'[:40], unit='it',
                         file=sys.stdout, position=stage.slot, leave=False, mininterval=1.0,
                         bar_format='{desc:40} {bar:20} {n_fmt}/{total_fmt} [{elapsed}{postfix}]')
        stage.log_file = open(stage.log, 'w', buffering=1)  # line-buffered: `tail -f` shows progress
        stage.proc = subprocess.Popen([sys.executable, *argv], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True, bufsize=1)
        threading.Thread(target=read, args=(stage,), daemon=True).start()

    def finish(stage):
        code = stage.proc.wait()
        stage.log_file.close()
        stage.bar.close()
        free.append(stage.slot)
        free.sort()
        if code:
            for other in plan.stages:
                if other.proc is not None and other.proc.poll() is None:
                    other.proc.kill()
            log = open(stage.log).read().splitlines()
            errors = [line for line in log if line.startswith('error:') or 'Error' in line.split(':')[0]]
            raise SystemExit(f'error: {stage.name} failed (log: {stage.log}): '
                             + (errors[-1] if errors else '\n'.join(log[-15:])))
        stage.seconds = time.time() - stage.started
        tqdm.write(f'{plan.number(stage)} {stage.name}: done in {fmt(stage.seconds)}', file=sys.stdout)

    waiting, running = list(plan.stages), set()
    while waiting or running:
        ready = [s for s in waiting if all(d.seconds is not None for d in s.after)]
        for stage in sorted(ready, key=plan.priority, reverse=True)[:len(free)]:
            waiting.remove(stage)
            running.add(stage)
            start(stage)
        stage, line = lines.get()
        if line is None:
            running.discard(stage)
            finish(stage)
            continue
        stage.log_file.write(line)
        if not parse_progress(line, stage.state):
            continue
        now = time.time()
        if stage.first is None:
            stage.first = (now, stage.state['done'])
        stage.bar.update(min(stage.state['done'], stage.total) - stage.bar.n)
        loss = f'loss {stage.state["loss"]:.3f}, ' if 'loss' in stage.state else ''
        stage.bar.set_postfix_str(f'{loss}ETA {fmt(stage.left(plan, now))}, demo ETA {fmt(plan.remaining(now))}',
                                  refresh=False)


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


def class_iou(log):
    """Per-class IoU {class: IoU %} of the last validation in an mmseg training log (IoUMetric's
    "per class results" table); {} when the log has none."""
    blocks = Path(log).read_text(errors='replace').split('per class results:')
    if len(blocks) == 1:
        return {}
    rows = re.findall(r'^\|\s*(.+?)\s*\|\s*([\d.]+|nan)\s*\|\s*([\d.]+|nan)\s*\|$', blocks[-1], re.M)
    return {name: float(iou) for name, iou, _ in rows}


# An item class counts as recognised at this IoU: twice what painting every item pixel with that
# class scores (each of the 10 classes holds about a tenth of the item pixels).
RECOGNISED_IOU = 20.0


def segmentation_note(ious):
    """What the UperNet row can and cannot say, from each encoder's per-class IoU {name: {class: IoU}}:
    the recognised item classes per encoder and, when no encoder recognises two, that its mIoU is
    the floor of a collapsed head (background vs one item class), not a comparison of encoders.
    Returns (text, collapsed)."""
    if not ious:
        return '', False
    recognised = {name: [c for c, v in per_class.items() if c != 'background' and v >= RECOGNISED_IOU]
                  for name, per_class in ious.items()}
    counts = '; '.join(f'{name} {len(found)} of {len(ious[name]) - 1}' + (f' ({", ".join(found)})' if found else '')
                       for name, found in recognised.items())
    text = (f'UperNet item classes recognised (IoU >= {RECOGNISED_IOU:.0f}, twice what painting every item with '
            f'one class scores): {counts}. ')
    collapsed = all(len(found) < 2 for found in recognised.values())
    if collapsed:
        text += ('No encoder recognises two item classes: at this budget the UperNet head separates items '
                 'from the background and paints (nearly) every item with one class, so its mIoU is the '
                 'floor of that collapse (about background IoU / 11 + 1), and the difference between '
                 'encoders means nothing.')
    return text, collapsed


def init_options(backbone):
    return ['model.backbone.init_cfg.type=Pretrained', f'model.backbone.init_cfg.checkpoint={backbone}',
            'model.backbone.init_cfg.prefix=backbone.']


def run_shape(gpu_name, cores, scale):
    """(sizes, parallel stages, torch threads per stage, device text for the page) of a run. With a
    GPU (``gpu_name``): GPU_SIZES, one stage at a time on every core. On a CPU: CPU_SIZES, two
    stages side by side on half the cores each (tiny models use a second thread poorly). ``scale``
    multiplies every stage length but those in UNSCALED, down to SMALLEST."""
    base = GPU_SIZES if gpu_name else CPU_SIZES
    sizes = {k: v if k in UNSCALED else max(SMALLEST[k], round(v * scale)) for k, v in base.items()}
    slots = 1 if gpu_name else max(1, min(2, cores))
    threads = max(1, cores // slots)
    if gpu_name:
        device = f'GPU ({gpu_name}): longer schedules than on CPU (GPU_SIZES in tools/demo.py)'
    else:
        device = f'CPU ({cores} cores: {slots} stages at a time, {threads} torch thread{"s" * (threads > 1)} each)'
    return sizes, slots, threads, device


def main():
    args = parse_args()
    import torch
    work = Path(args.work_dir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    gpu_name = torch.cuda.get_device_name(0) if torch.cuda.is_available() and not args.cpu else None
    sizes, slots, threads, device = run_shape(gpu_name, os.cpu_count() or 1, args.scale)

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

    stages = build_stages(work, sizes, data_root)
    plan = Plan(list(stages.values()), slots)
    print(f'LocalMIM demo on {device}; data: {data_note}; work dir {work}', flush=True)
    expected = sum(s.expected for s in plan.stages) / slots
    where = ('sized for about 15 minutes on one H200-class GPU' if gpu_name else
             f'about {fmt(expected)} on 2 quiet CPU cores at this size')
    print(f'{len(plan.stages)} stages, {where} (the bars calibrate the ETA on this machine)', flush=True)
    os.environ[CANVAS_ROOT] = str(work / 'data' / CANVAS_FOLDER)  # the canvas configs read their root from it
    run_stages(plan, threads)

    metrics, speeds, curves = {}, {}, {}
    for name in PRETRAIN:
        wd = work / f'pretrain_{name}'
        speeds[name] = images_per_second(wd)
        curves[name] = [(e['iter'], e['loss']) for e in scalars(wd) if 'loss' in e and 'iter' in e]
    probe = {}
    for name in ENCODERS:
        probe.update(json.loads((work / f'linear_probe_{slug(name)}' / 'linear_probe.json').read_text()))
    for name in ENCODERS:
        metrics[('linear probe', 'top-1 %', name)] = probe[name]['top1']
    second = probe.get(f'{RANDOM} (seed 1)')  # the linear probe's noise, where measured in the run
    noise = abs(probe[RANDOM]['top1'] - second['top1']) if second else None
    for name in ENCODERS:
        metrics[('fine-tune', 'top-1 %', name)] = last_scalars(work / f'fine-tune_{slug(name)}').get(
            'accuracy/top1', float('nan'))
    seg_ious = {}  # UperNet's per-class IoU of each encoder (its log's table), for the collapse note
    for task, keys in (('Mask R-CNN', [('coco/bbox_mAP', 'bbox AP'), ('coco/segm_mAP', 'mask AP')]),
                       ('UperNet', [('mIoU', 'mIoU')])):
        for name in ENCODERS:
            values = last_scalars(work / f'{slug(task)}_{slug(name)}')
            for key, label in keys:
                scale = 100 if key.startswith('coco/') else 1
                metrics[(task, label, name)] = values.get(key, float('nan')) * scale
            if task == 'UperNet' and (per_class := class_iou(work / f'{slug(task)}_{slug(name)}.log')):
                seg_ious[name] = per_class

    pictures = {f'reconstruction {name}': f'reconstruction_{name}.png' for name in PRETRAIN}
    for task in ('Mask-R-CNN', 'UperNet'):
        found = sorted((work / f'{task}_LocalMIM').glob('*/vis_data/vis_image/*.png'))[:2]
        for i, path in enumerate(found):
            target = work / f'predictions_{task}_LocalMIM_{i}.png'
            target.write_bytes(path.read_bytes())
            pictures[f'{task} predictions (LocalMIM, left ground truth, right prediction) {i}'] = target.name
    plot_curves(curves, work / 'loss_curves.png')
    pictures = {'pretraining loss curves': 'loss_curves.png', **pictures}
    times = {key: s.seconds for key, s in stages.items()}
    table = results_table(metrics, times, speeds, noise, data_note, device, sizes, pictures,
                          time.time() - plan.start, segmentation_note(seg_ious))
    (work / 'results.md').write_text(table)
    (work / 'results.html').write_text(markdown_to_html(table))
    print('\n' + table, flush=True)
    print(f'saved {work / "results.md"} and {work / "results.html"}', flush=True)


def slug(name):
    return name.replace(' ', '-')


def build_stages(work, sizes, data_root):
    """Every stage of the demo, keyed by (kind, encoder name) or kind, with what each waits for."""
    st = {}
    st['data'] = Stage('data', 'canvases', sizes['canvas_train'] + sizes['canvas_val'], [
        'tools/make_fmnist_detection.py', '--out', str(work / 'data' / CANVAS_FOLDER), *CANVAS_SHAPE,
        '--num-train', str(sizes['canvas_train']), '--num-val', str(sizes['canvas_val']), '--data-root', data_root,
        '--seed', '0'], work / 'data.log')
    log_every = f'default_hooks.logger.interval={max(1, min(20, sizes["pretrain_iters"] // 40))}'
    backbones = {RANDOM: None}
    for name, config in PRETRAIN.items():
        wd = work / f'pretrain_{name}'
        num_samples = 64 * max(1, sizes['pretrain_iters'] // 4)  # 4 epochs of iters / 4 batches of 64
        st[('pretrain', name)] = Stage('pretrain', f'pretrain {name}', sizes['pretrain_iters'], [
            'tools/train.py', config, '--work-dir', str(wd), '--max-epochs', '4', '--cfg-options',
            f'train_dataloader.dataset.data_root={data_root}', f'train_dataloader.dataset.num_samples={num_samples}',
            log_every], wd.with_suffix('.log'), total=4 * (num_samples // 64))

        def last_checkpoint(wd=wd):
            return (wd / 'last_checkpoint').read_text().strip()
        backbones[name] = str(work / f'{name}_backbone.pth')
        st[('convert', name)] = Stage(
            'convert', f'convert {name}', 0,
            lambda wd=wd, name=name: ['tools/convert_checkpoint.py', last_checkpoint(wd), backbones[name]],
            work / f'convert_{name}.log', after=[st[('pretrain', name)]])
        st[('pictures', name)] = Stage(
            'pictures', f'reconstructions {name}', 0,
            lambda wd=wd, name=name, config=config: [
                'tools/visualize_reconstruction.py', config, last_checkpoint(wd), '--out',
                str(work / f'reconstruction_{name}.png'), '--data-root', data_root, '--indices', '0', '1', '2', '3'],
            work / f'pictures_{name}.log', after=[st[('pretrain', name)]])

    def after(name):
        return [st[('convert', name)]] if name in PRETRAIN else []

    # linear probe; random init also at seed 1 (the run-to-run noise) where it is not known, in one run
    probes = {RANDOM: (['random', 'random:1'], [RANDOM, f'{RANDOM} (seed 1)']) if not noise_measured_once(sizes)
              else (['random'], [RANDOM])}
    probes.update({name: ([backbones[name]], [name]) for name in PRETRAIN})
    for name, (checkpoints, names) in probes.items():
        wd = work / f'linear_probe_{slug(name)}'
        batches = sum(-(-sizes[k] // 256) for k in ('probe_train', 'probe_test')) * len(names)
        st[('probe', name)] = Stage('probe', f'linear probe {" + ".join(names)}',
                                    len(names) * (sizes['probe_train'] + sizes['probe_test']), [
            'tools/linear_probe.py', PROBE_CONFIG, *checkpoints, '--names', *names, '--work-dir', str(wd),
            '--progress', '--save-classifier', '--cfg-options',
            *[f'probe_{split}_dataloader.dataset.data_root={data_root}' for split in ('train', 'test')],
            f'probe_train_dataloader.dataset.num_samples={sizes["probe_train"]}',
            f'probe_test_dataloader.dataset.num_samples={sizes["probe_test"]}'],
            wd.with_suffix('.log'), total=batches, after=after(name))

    n = sizes['finetune_iters']
    for name in ENCODERS:
        wd = work / f'fine-tune_{slug(name)}'

        def finetune_argv(wd=wd, name=name):  # LP-FT: from the classifier its probe stage saved
            probed = json.loads((work / f'linear_probe_{slug(name)}' / 'linear_probe.json').read_text())
            return [
                'tools/train.py', FINETUNE_CONFIG, '--work-dir', str(wd), '--max-iters', str(n), '--cfg-options',
                f'load_from={probed[name]["classifier"]}', f'train_dataloader.batch_size={sizes["finetune_batch"]}',
                *[f'{k}_dataloader.dataset.data_root={data_root}' for k in ('train', 'val', 'test')],
                f'val_dataloader.dataset.num_samples={sizes["finetune_val"]}', f'train_cfg.val_interval={n}',
                f'default_hooks.checkpoint.interval={n}', f'default_hooks.logger.interval={max(1, min(20, n // 20))}']
        st[('finetune', name)] = Stage('finetune', f'fine-tune {name}', n, finetune_argv, wd.with_suffix('.log'),
                                       total=n, val_units=sizes['finetune_val'], after=[st[('probe', name)]])

    for kind, task, config in (('det', 'Mask R-CNN', DET_CONFIG), ('seg', 'UperNet', SEG_CONFIG)):
        n = sizes[f'{kind}_iters']
        for name in ENCODERS:
            wd = work / f'{slug(task)}_{slug(name)}'
            draw = ['default_hooks.visualization.draw=True',
                    f'default_hooks.visualization.interval={max(1, sizes["canvas_val"] // 4)}']
            st[(kind, name)] = Stage(kind, f'{task} {name}', n, [
                'tools/train.py', config, '--work-dir', str(wd), '--max-iters', str(n), '--cfg-options',
                *(init_options(backbones[name]) if backbones[name] else []), f'train_cfg.val_interval={n}',
                f'default_hooks.checkpoint.interval={n}',
                f'default_hooks.logger.interval={max(1, min(20, n // 20))}', *draw],
                wd.with_suffix('.log'), total=n, val_units=sizes['canvas_val'], after=[st['data'], *after(name)])
    return st


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


def signed_difference(diff, spread):
    """'+1.23', marked '(within noise)' when a measured run-to-run ``spread`` (None: unknown) covers it."""
    return f'{diff:+.2f}' + (' (within noise)' if spread is not None and abs(diff) <= spread else '')


def results_table(metrics, times, speeds, noise, data_note, device, sizes, pictures, total, seg_note=('', False)):
    names = [RANDOM, *PRETRAIN]
    lines = ['# LocalMIM transfer demo', '', f'Data: {data_note}. Device: {device}. Total time {fmt(total)}.', '',
             '| stage | metric | ' + ' | '.join(names) + ' | LocalMIM - global-only | time ('
             + ' / '.join(names) + ') |',
             '|---|---|' + '---|' * len(names) + '---|---|',
             f'| pretraining ({sizes["pretrain_iters"]} iterations of 64 images) | images/s | - | '
             + ' | '.join(f'{speeds[n]:.1f}' for n in PRETRAIN) + ' | | - / '
             + ' / '.join(fmt(times[('pretrain', n)]) for n in PRETRAIN) + ' |']
    stage_keys = {'linear probe': 'probe', 'fine-tune': 'finetune', 'Mask R-CNN': 'det', 'UperNet': 'seg'}
    # the spread that marks each task's differences: the once-measured ones where they hold, else the
    # linear probe's measured in this run (``noise``) alone
    measured_once = noise_measured_once(sizes)
    spreads = ONCE_MEASURED_NOISE if measured_once else {('linear probe', 'top-1 %'): noise}
    over_random = []  # LocalMIM - random init, for every task with a random-init value
    for task, metric in dict.fromkeys((t, m) for t, m, _ in metrics):
        values = [metrics.get((task, metric, n)) for n in names]
        spread = spreads.get((task, metric))
        local = metrics[(task, metric, 'LocalMIM')]
        diff = local - metrics[(task, metric, 'global-only')]
        verdict = (f'{diff:+.2f} (collapsed head: no comparison)' if task == 'UperNet' and seg_note[1]
                   else signed_difference(diff, spread))
        if (task, metric, RANDOM) in metrics:
            over_random.append(f'{task} {metric} {signed_difference(local - metrics[(task, metric, RANDOM)], spread)}')
        key = stage_keys[task]
        time_cell = ' / '.join(fmt(times[(key, n)]) if (key, n) in times else '-' for n in names)
        lines.append(f'| {task} | {metric} | ' + ' | '.join('-' if v is None else f'{v:.2f}' for v in values)
                     + f' | {verdict} | {time_cell} |')
    both_seeds = '' if measured_once else ', the random-init time covering both seeds'
    lines += ['', 'LocalMIM - random init (the same downstream recipe from the same encoder at random '
              'initialisation): ' + ', '.join(over_random) + '.',
              '', noise_text(None if measured_once else noise), '', *([seg_note[0], ''] if seg_note[0] else []),
              f'Classification: Fashion-MNIST test split (linear probe: {sizes["probe_test"]} images, features of '
              f'{sizes["probe_train"]} training images{both_seeds}; fine-tune: {sizes["finetune_iters"]} iterations '
              f'of {sizes["finetune_batch"]} from the probe\'s fitted layer '
              f'(LP-FT), {sizes["finetune_val"]} test images). Mask R-CNN and UperNet: {sizes["det_iters"]} and '
              f'{sizes["seg_iters"]} iterations of 4 canvases ({CANVAS_TEXT}: the pretraining scale), '
              f'{sizes["canvas_val"]} validation canvases. Times are wall clock with stages running side by side.', '',
              *targets_table(metrics)]
    for title, name in pictures.items():
        lines += [f'## {title}', '', f'![{title}]({name})', '']
    return '\n'.join(lines)


def noise_text(noise):
    """The results page's paragraph on run-to-run noise: the linear probe's ``noise`` measured in
    this run (at sizes other than the CPU's at --scale 1), or None at the CPU sizes of --scale 1,
    where every once-measured spread holds."""
    others = ', '.join(f'{t} {m} {v:.1f}' for (t, m), v in ONCE_MEASURED_NOISE.items() if t != 'linear probe')
    if noise is None:
        return (f'Run-to-run noise, measured once at the CPU sizes of --scale 1 (2026-12-05): two random-init '
                f'encoders (seeds 0 and 1) under the linear probe differ by '
                f'{ONCE_MEASURED_NOISE[("linear probe", "top-1 %")]:.2f} points of top-1; between runs of the same '
                f'LocalMIM encoder the spread is {others} points. Differences below these are marked "within noise".')
    return (f'Run-to-run noise: in this run, two random-init encoders (seeds 0 and 1) under the linear probe differ '
            f'by {noise:.2f} points of top-1; differences below that are marked "within noise". Measured once at '
            f'the CPU sizes of --scale 1 (2026-12-05), the spread between runs of the same LocalMIM encoder: '
            f'{others} points; these sizes differ, so they mark nothing here.')


def targets_table(metrics):
    """Lines of the results page comparing the LocalMIM row with the targets (issue 17): met, or
    missed by how much and the closest schedule measured (``CLOSEST``)."""
    lines = ['## Targets for the LocalMIM row', '',
             '| target | required | LocalMIM, this run | verdict | closest schedule measured (CPU) |',
             '|---|---|---|---|---|']
    for (task, metric), required in TARGETS.items():
        value = metrics.get((task, metric, 'LocalMIM'))
        if value is None:  # a task that did not run
            continue
        met = value >= required
        verdict = 'met' if met else f'missed by {required - value:.2f}'
        closest = '' if met else CLOSEST.get((task, metric), '')
        lines.append(f'| {task} {metric} | >= {required} | {value:.2f} | {verdict} | {closest} |')
    return lines + ['']


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
