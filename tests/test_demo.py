"""The main job end to end, shrunk: every stage of tools/demo.py runs through the real tools and the
results page is written. The numbers checked are sanity bounds of the shortened run, not results."""
import re
import subprocess
import sys
from pathlib import Path

from localmim.datasets.fashion_mnist import DEFAULT_FASHION_MNIST_ROOT

ROOT = Path(__file__).resolve().parents[1]


def test_demo_smoke_run_writes_every_metric(tmp_path):
    synthetic = not Path(DEFAULT_FASHION_MNIST_ROOT).is_dir()  # generated data only where it must
    args = ['--work-dir', str(tmp_path), '--scale', '0.01', '--cpu']
    if synthetic:
        args += ['--data-root', str(tmp_path / 'nowhere'), '--synthetic']
    run = subprocess.run([sys.executable, 'tools/demo.py', *args], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    table = (tmp_path / 'results.md').read_text()
    assert ('GENERATED' in table) == synthetic
    header, *rows = [line for line in table.splitlines() if line.startswith('| ') and '---' not in line]
    assert [c.strip() for c in header.strip('|').split('|')][2:5] == ['random init', 'LocalMIM', 'global-only']
    cells = {tuple(c.strip() for c in row.strip('|').split('|')[:2]): [c.strip() for c in row.strip('|').split('|')]
             for row in rows}
    assert list(cells) == [(next(iter(cells))[0], 'images/s'), ('linear probe', 'top-1 %'), ('fine-tune', 'top-1 %'),
                           ('Mask R-CNN', 'bbox AP'), ('Mask R-CNN', 'mask AP'), ('UperNet', 'mIoU')]
    for key, row in cells.items():
        measured = row[2:5] if key[0] in ('linear probe', 'fine-tune') else row[3:5]  # random init: classification
        values = [float(v) for v in measured]
        assert all(0 <= v <= (100 if key[1] != 'images/s' else 1e6) for v in values), row  # numbers, not 'nan'
        assert re.fullmatch(r'(-|\d+:\d\d)( / (-|\d+:\d\d))*( for all)?', row[6]), row
    if not synthetic:  # 100 training images already lift a linear probe far above chance (10%)
        assert all(float(v) > 25 for v in cells[('linear probe', 'top-1 %')][2:5]), table
    assert re.search(r'differ by \d+\.\d\d points', table)
    for name in ('reconstruction_LocalMIM.png', 'reconstruction_global-only.png', 'loss_curves.png'):
        assert (tmp_path / name).stat().st_size > 10_000, name
        assert f']({name})' in table
    page = (tmp_path / 'results.html').read_text()
    assert page.count('<tr>') == 7 and '<img alt="pretraining loss curves" src="loss_curves.png">' in page
    assert '[14/14]' in run.stdout and 'demo ETA' in run.stdout


def test_demo_without_data_says_how_to_get_it(tmp_path):
    run = subprocess.run([sys.executable, 'tools/demo.py', '--work-dir', str(tmp_path), '--data-root',
                          str(tmp_path / 'nowhere')], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode != 0
    assert 'dataset-fashion-mnist' in run.stderr and '--synthetic' in run.stderr
