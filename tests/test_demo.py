"""The main job end to end, shrunk: every stage of tools/demo.py runs and the table is written."""
import re
import subprocess
import sys
from pathlib import Path

from localmim.datasets.fashion_mnist import DEFAULT_FASHION_MNIST_ROOT

ROOT = Path(__file__).resolve().parents[1]


def test_demo_smoke_run_writes_every_metric(tmp_path):
    synthetic = not Path(DEFAULT_FASHION_MNIST_ROOT).is_dir()  # generated data only where it must
    args = ['--work-dir', str(tmp_path), '--scale', '0.01']
    if synthetic:
        args += ['--data-root', str(tmp_path / 'nowhere'), '--synthetic']
    run = subprocess.run([sys.executable, 'tools/demo.py', *args], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    table = (tmp_path / 'results.md').read_text()
    assert ('GENERATED' in table) == synthetic
    rows = [line for line in table.splitlines() if line.startswith('| ') and 'stage' not in line]
    assert len(rows) == 6  # pretraining speed + 5 transfer metrics
    for row in rows:
        cells = [c.strip() for c in row.strip('|').split('|')]
        values = [float(v) for v in cells[2:4]]  # LocalMIM, global-only: numbers, not 'nan'
        assert all(v == v for v in values), row
        assert re.fullmatch(r'\d+:\d\d / \d+:\d\d', cells[4]), row
    for name in ('LocalMIM', 'global-only'):
        assert (tmp_path / f'reconstruction_{name}.png').stat().st_size > 10_000
    assert '[14/14]' in run.stdout and 'ETA' in run.stdout


def test_demo_without_data_says_how_to_get_it(tmp_path):
    run = subprocess.run([sys.executable, 'tools/demo.py', '--work-dir', str(tmp_path), '--data-root',
                          str(tmp_path / 'nowhere')], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode != 0
    assert 'dataset-fashion-mnist' in run.stderr and '--synthetic' in run.stderr
