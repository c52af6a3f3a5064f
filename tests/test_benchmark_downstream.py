"""tools/benchmark_downstream.py: input sizes read from the configs, the CPU peak-memory probe, one
measured step of the tiny configs, and the ``--steps`` dry run (real Runner, generated data)."""
import os.path as osp
import sys

import pytest
import torch
from _dense_helpers import REPO_DIR

sys.path.insert(0, osp.join(REPO_DIR, 'tools'))
import benchmark_downstream as bench  # noqa: E402

TINY = {'coco': 'mask-rcnn_vit-tiny_simplefpn_fmnist-canvas.py', 'ade20k': 'upernet_vit-tiny_fmnist-canvas.py'}


def config(folder, name):
    return bench.load_config(osp.join(REPO_DIR, 'mm_configs', folder, name))


@pytest.mark.parametrize('folder, name, size', [
    ('coco', 'mask-rcnn_localmim-vit-b_simplefpn_lsj-1024-100e_coco.py', (1024, 1024)),
    ('coco', 'mask-rcnn_localmim-swin-b_fpn_1x_coco.py', (800, 1333)),
    ('ade20k', 'upernet_localmim-vit-b_8xb2-160k_ade20k-512x512.py', (512, 512)),
    ('coco', TINY['coco'], (64, 64))])
def test_input_size_is_the_configs(folder, name, size):
    assert bench.input_size(config(folder, name)) == size


def test_cpu_peak_memory_follows_the_live_tensors():
    cpu = torch.device('cpu')
    with bench.PeakMemory(cpu) as before:
        pass
    with bench.PeakMemory(cpu) as big:
        block = torch.ones(64, 2 ** 20)  # 256 MiB, touched
        del block
    with bench.PeakMemory(cpu) as after:
        torch.ones(1024).sum()
    assert 0.24 < big.peak - before.peak < 0.4
    assert after.peak - before.peak < 0.05  # the peak was reset and the block handed back


@pytest.mark.parametrize('folder', ['coco', 'ade20k'])
def test_one_measured_step_of_a_tiny_config(folder):
    cfg = config(folder, TINY[folder])
    results, batch, params = bench.benchmark(cfg, torch.device('cpu'), warmup=0, iters=1)
    assert batch == (1 if folder == 'coco' else 2)
    assert set(results) == {'train step', 'backbone', 'test forward'}
    for seconds, peak in results.values():
        assert seconds > 0 and peak > 0.1
    model = bench.build_model(cfg, torch.device('cpu'))
    assert params == sum(p.numel() for p in model.parameters() if p.requires_grad)
    text = bench.report(TINY[folder], torch.device('cpu'), batch, bench.input_size(cfg), results, params)
    assert 'images/s' in text and 'backbone share' in text


@pytest.mark.parametrize('folder, metric', [('coco', 'coco/bbox_mAP'), ('ade20k', 'mIoU')])
def test_steps_mode_trains_and_validates_on_generated_data(folder, metric, tmp_path):
    cfg = config(folder, TINY[folder])
    metrics = bench.short_run(cfg, 2, str(tmp_path), torch.device('cpu'))
    assert metric in metrics
    assert osp.isdir(tmp_path / 'data') and list((tmp_path / 'run').glob('*/*.log'))
