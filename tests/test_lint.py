"""The code passes ``ruff check`` with the project's settings (pyproject.toml, [tool.ruff])."""
import os.path as osp
import shutil
import subprocess
import sys

REPO_DIR = osp.dirname(osp.dirname(osp.abspath(__file__)))


def ruff_executable():
    beside_python = osp.join(osp.dirname(sys.executable), 'ruff')
    return beside_python if osp.exists(beside_python) else shutil.which('ruff')


def test_ruff_check_passes_with_the_project_settings():
    ruff = ruff_executable()
    assert ruff, 'ruff is not installed (tools/setup_env.sh installs it)'
    result = subprocess.run([ruff, 'check', '--no-cache', '.'], cwd=REPO_DIR, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    settings = open(osp.join(REPO_DIR, 'pyproject.toml')).read()
    assert '[tool.ruff.lint]' in settings and 'select = ["E", "F", "W"]' in settings
