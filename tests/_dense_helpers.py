"""Helpers of the COCO / ADE20K tests: a tiny canvas set, tools/*.py in a subprocess, logged metrics."""
import glob
import json
import os
import os.path as osp
import subprocess
import sys

from _data_helpers import write_tiny_fashion_mnist
from mmengine.config import Config
from mmengine.registry import init_default_scope

from localmim.datasets.fmnist_canvas import write_fmnist_canvas_dataset

TESTS_DIR = osp.dirname(osp.abspath(__file__))
REPO_DIR = osp.dirname(TESTS_DIR)
# a run that only checks the plumbing: 2 iterations of batch 2, validation right after
SHORT_RUN = ['train_cfg.max_iters=2', 'train_cfg.val_interval=2', 'train_dataloader.batch_size=2',
             'train_dataloader.num_workers=0', 'val_dataloader.num_workers=0', 'test_dataloader.num_workers=0',
             'default_hooks.checkpoint.interval=2', 'default_hooks.logger.interval=1']


def make_canvas_set(tmp_path_factory, num_train=8, num_val=4, canvas_size=128):
    """A Fashion-MNIST canvas set (COCO instances + ADE-style maps) under a fresh temp folder."""
    fmnist = str(tmp_path_factory.mktemp('fmnist'))
    write_tiny_fashion_mnist(fmnist)
    out = str(tmp_path_factory.mktemp('canvas'))
    write_fmnist_canvas_dataset(out, data_root=fmnist, num_train=num_train, num_val=num_val,
                                canvas_size=canvas_size, seed=0)
    return out


def run_tools(commands, canvas_root):
    """Run ``python tools/<tool> args`` for each (tool, args) of ``commands`` at the same time, from
    the repo root with FMNIST_CANVAS_ROOT and FMNIST_SMALL_CANVAS_ROOT set (the small-canvas configs
    resize any canvas to 64 px); fails if any exits non-zero."""
    env = dict(os.environ, FMNIST_CANVAS_ROOT=canvas_root, FMNIST_SMALL_CANVAS_ROOT=canvas_root,
               OMP_NUM_THREADS=str(max(1, 2 // len(commands))),
               PYTHONPATH=os.pathsep.join([REPO_DIR, os.environ.get('PYTHONPATH', '')]))
    processes = [subprocess.Popen([sys.executable, osp.join('tools', tool), *args], cwd=REPO_DIR, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for tool, args in commands]
    for (tool, args), process in zip(commands, processes):
        stdout, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, f'tools/{tool} {args}:\n{stdout[-3000:]}{stderr[-6000:]}'


def train_tiny_configs(folder, configs, canvas_root, tmp_path_factory):
    """{kind: work dir} of a 2-iteration training + validation run of each config in ``configs``
    ({kind: file name under mm_configs/<folder>}), all run at once through tools/train.py."""
    work_dirs = {kind: str(tmp_path_factory.mktemp(f'{folder}_{kind}')) for kind in configs}
    run_tools([('train.py', [osp.join('mm_configs', folder, name), '--work-dir', work_dirs[kind],
                             '--cfg-options', *SHORT_RUN]) for kind, name in configs.items()], canvas_root)
    return work_dirs


def logged_metrics(work_dir, key):
    """The last record holding ``key`` among the json logs of a work dir (training: vis_data/scalars.json,
    testing: <timestamp>/<timestamp>.json)."""
    records = []
    for path in sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
                       + glob.glob(osp.join(work_dir, '*', '*.json'))):
        with open(path) as file:
            records += [r for r in map(json.loads, filter(str.strip, file)) if key in r]
    assert records, f'no logged record with {key!r} under {work_dir}'
    return records[-1]


def log_text(work_dir):
    """Text of the newest run's log file in a work dir."""
    logs = sorted(glob.glob(osp.join(work_dir, '*', '*.log')))
    assert logs, f'no log file under {work_dir}'
    with open(logs[-1]) as file:
        return file.read()


def load_config(*parts):
    """Config.fromfile of mm_configs/<parts...>, its default scope made current."""
    cfg = Config.fromfile(osp.join(REPO_DIR, 'mm_configs', *parts))
    init_default_scope(cfg.default_scope)
    return cfg


def config_names(folder):
    """Config files directly under mm_configs/<folder> (not _base_), sorted."""
    return sorted(osp.basename(p) for p in glob.glob(osp.join(REPO_DIR, 'mm_configs', folder, '*.py')))


def tiny_pretrained_vit(path):
    """The encoder of a freshly initialised pretrain/localmim_vit-tiny_fmnist.py LocalMIM, saved as a
    backbone checkpoint (``backbone.*`` keys, as tools/convert_checkpoint.py writes) at ``path``."""
    import torch

    from localmim.conversion import convert_localmim_pretrain
    from localmim.registry import build_model

    torch.manual_seed(0)
    pretrain = Config.fromfile(osp.join(REPO_DIR, 'mm_configs', 'pretrain', 'localmim_vit-tiny_fmnist.py'))
    mim = build_model(pretrain.model)
    state, _ = convert_localmim_pretrain({'state_dict': mim.state_dict()})
    torch.save({'state_dict': state}, path)
    return mim.encoder


def assert_loaded_encoder(backbone, encoder):
    """``backbone`` (built at 128 px) holds ``encoder``'s (64 px) weights, position table resampled."""
    import torch

    from localmim.models.vit import resample_pos_embed

    for name, value in encoder.state_dict().items():
        if name.startswith('blocks.') or name.startswith('patch_embed.'):
            torch.testing.assert_close(backbone.state_dict()[name], value, msg=name)
    expected = resample_pos_embed(encoder.pos_embed.detach(), encoder.grid, backbone.grid)
    torch.testing.assert_close(backbone.pos_embed.detach(), expected)
