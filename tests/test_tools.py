"""tools/train.py, tools/test.py, tools/dist_train.sh and mim end to end, in subprocesses, on CPU.

The toy config (tests/configs/toy_regression.py) trains a 58-parameter regressor for 6
iterations with checkpoints every 2, zeroing random inputs like MIM masks; its components come
from tests/engine_toys.py. ``localmim.IterationSeedHook`` makes the random draws after a resume
equal those of an uninterrupted run.
"""
import glob
import json
import os
import os.path as osp
import pickle
import re
import runpy
import shutil
import socket
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config

from localmim.checkpoint import load_checkpoint_file
from localmim.engine.launch import build_runner, load_config, run_tool

TESTS_DIR = osp.dirname(osp.abspath(__file__))
REPO_DIR = osp.dirname(TESTS_DIR)
CONFIGS = osp.join(TESTS_DIR, 'configs')
if TESTS_DIR not in sys.path:
    sys.path.insert(0, TESTS_DIR)
from engine_toys import ToyRegressionDataset, ToyRegressor  # noqa: E402


def run(command, **env):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO_DIR, TESTS_DIR]),
               OMP_NUM_THREADS='1', **env)
    return subprocess.run(command, cwd=REPO_DIR, env=env, capture_output=True, text=True,
                          timeout=300)


def check(result):
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def train(config, work_dir, *args):
    return run([sys.executable, 'tools/train.py', osp.join(CONFIGS, config),
                '--work-dir', str(work_dir), *args])


def read_losses(work_dir, rank=0):
    """{iteration: loss} from the ToyLossRecorderHook file; a re-run iteration keeps its last."""
    with open(osp.join(work_dir, f'losses_rank{rank}.txt')) as file:
        return {int(i): float(loss) for i, loss in (line.split() for line in file)}


@pytest.fixture(scope='module')
def reference_run(tmp_path_factory):
    """An uninterrupted 6-iteration run."""
    work_dir = tmp_path_factory.mktemp('reference')
    check(train('toy_regression.py', work_dir))
    return work_dir


def test_train_writes_checkpoints_and_test_evaluates_them(reference_run, tmp_path):
    work_dir = reference_run
    checkpoint = osp.join(work_dir, 'iter_6.pth')
    assert open(osp.join(work_dir, 'last_checkpoint')).read() == checkpoint
    out_file = tmp_path / 'predictions.pkl'
    check(run([sys.executable, 'tools/test.py', osp.join(CONFIGS, 'toy_regression.py'),
               checkpoint, '--work-dir', str(tmp_path), '--out', str(out_file)]))

    # independent evaluation of the checkpoint's weights
    model = ToyRegressor()
    model.load_state_dict(load_checkpoint_file(checkpoint)['state_dict'])
    dataset = ToyRegressionDataset(size=8, seed=1)
    with torch.no_grad():
        predictions = model.net(dataset.inputs)
    expected_mse = ((predictions - dataset.targets) ** 2).mean().item()

    [log_json] = [osp.join(root, name) for root, _, names in os.walk(tmp_path)
                  for name in names if name.endswith('.json') and 'vis_data' not in root]
    with open(log_json) as file:
        metrics = json.load(file)
    assert metrics['toy/mse'] == pytest.approx(expected_mse, rel=1e-5)
    with open(out_file, 'rb') as file:  # our own dump, written by mmengine's DumpResults
        dumped = pickle.load(file)
    torch.testing.assert_close(torch.stack([d['pred'] for d in dumped]), predictions)


def test_sigkill_mid_save_then_resume_continues_like_an_uninterrupted_run(reference_run,
                                                                           tmp_path):
    # The run is SIGKILLed halfway through writing iter_4.pth.
    killed = train('toy_regression_killed.py', tmp_path)
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert not (tmp_path / 'iter_4.pth').exists()
    assert (tmp_path / '.iter_4.pth.partial').exists()
    assert open(tmp_path / 'last_checkpoint').read() == str(tmp_path / 'iter_2.pth')
    assert load_checkpoint_file(tmp_path / 'iter_2.pth')['meta']['iter'] == 2

    check(train('toy_regression.py', tmp_path, '--resume'))
    reference = read_losses(reference_run)
    resumed = read_losses(tmp_path)
    assert sorted(resumed) == [1, 2, 3, 4, 5, 6]
    assert resumed == reference  # iterations 3-6 re-run after the resume are bit-identical
    final = load_checkpoint_file(tmp_path / 'iter_6.pth')['state_dict']
    expected = load_checkpoint_file(reference_run / 'iter_6.pth')['state_dict']
    for key in expected:
        assert torch.equal(final[key], expected[key])


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def test_two_process_cpu_training_keeps_ranks_in_sync(tmp_path):
    # 2 ranks x batch 2 see the same 4 samples per step as a single process with batch 4; the
    # random input dropping is off so that both compute the same mean gradient.
    options = ['train_dataloader.batch_size=2', 'train_cfg.max_iters=2', 'model.drop_ratio=0.0']
    check(run(['bash', 'tools/dist_train.sh', osp.join(CONFIGS, 'toy_regression.py'), '2',
               '--work-dir', str(tmp_path / 'ddp'), '--cfg-options', *options],
              PYTHON=sys.executable, PORT=str(free_port())))
    weights = [json.load(open(tmp_path / f'ddp/weights_rank{rank}.json')) for rank in (0, 1)]
    assert weights[0] == weights[1]
    losses = [read_losses(tmp_path / 'ddp', rank) for rank in (0, 1)]
    assert losses[0] != losses[1]  # the ranks trained on different halves of each batch

    cfg = load_config(osp.join(CONFIGS, 'toy_regression.py'), work_dir=str(tmp_path / 'single'),
                      cfg_options=dict(model=dict(drop_ratio=0.0), train_cfg=dict(max_iters=2)))
    cfg.experiment_name = 'single_process_reference'
    build_runner(cfg).train()
    single_losses = read_losses(tmp_path / 'single')
    for step in (1, 2):  # mean of the two half-batch losses = the full-batch loss
        assert (losses[0][step] + losses[1][step]) / 2 == pytest.approx(single_losses[step],
                                                                        rel=1e-5)
    single = json.load(open(tmp_path / 'single/weights_rank0.json'))
    torch.testing.assert_close(torch.tensor(weights[0]), torch.tensor(single), rtol=0, atol=1e-6)


# ------------------------------------------------------------- tools/test.py: partial checkpoints
def test_test_tool_refuses_a_checkpoint_covering_part_of_the_model(reference_run, tmp_path, capsys):
    state = load_checkpoint_file(osp.join(reference_run, 'iter_6.pth'))['state_dict']
    partial = {'net.0.weight': state['net.0.weight'], 'net.0.bias': state['net.0.bias'],
               'net.2.weight': torch.zeros(3, 8)}  # net.2.bias missing, net.2.weight mis-shaped
    torch.save({'state_dict': partial}, tmp_path / 'partial.pth')
    main = runpy.run_path(osp.join(REPO_DIR, 'tools', 'test.py'))['main']
    argv = [osp.join(CONFIGS, 'toy_regression.py'), str(tmp_path / 'partial.pth'), '--work-dir',
            str(tmp_path), '--cfg-options', 'experiment_name=partial_refused']
    with pytest.raises(SystemExit) as exit_info:  # in-process, with the tools' error reporting
        run_tool(main, argv)
    assert exit_info.value.code == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f'error: checkpoint {tmp_path / "partial.pth"} does not cover the model: 1 of the model\'s '
        '4 keys are not in it: net.2.bias; 1 have another shape: net.2.weight (3, 8) vs model '
        '(2, 8). The uncovered weights would stay random and the metrics would be meaningless; '
        'pass --allow-partial to evaluate anyway.')
    argv[-1] = 'experiment_name=partial_allowed'
    metrics = run_tool(main, argv + ['--allow-partial'])
    assert 'toy/mse' in metrics


# --------------------------------------------------------------------------------- mim (openmim)
def installed_wheel(tmp_path):
    """localmim built as a wheel (from a copy of the sources) and installed under a folder:
    {folder}/localmim, as pip installs it for a user."""
    source = tmp_path / 'source'
    for name in ('localmim', 'tools', 'mm_configs'):
        shutil.copytree(osp.join(REPO_DIR, name), source / name, symlinks=True,
                        ignore=shutil.ignore_patterns('__pycache__'))
    for name in ('pyproject.toml', 'README.md'):
        shutil.copy(osp.join(REPO_DIR, name), source / name)
    pip = [sys.executable, '-m', 'pip', '--disable-pip-version-check', '-q']
    check(subprocess.run([*pip, 'wheel', '--no-deps', '--no-build-isolation', '-w', str(tmp_path / 'dist'),
                          str(source)], capture_output=True, text=True, timeout=300))
    [wheel] = (tmp_path / 'dist').glob('localmim-*.whl')
    site = tmp_path / 'site'
    check(subprocess.run([*pip, 'install', '--no-deps', '--target', str(site), str(wheel)],
                         capture_output=True, text=True, timeout=300))
    return site


def test_mim_trains_a_packaged_config_by_name_and_tests(tmp_path):
    from _data_helpers import write_tiny_fashion_mnist
    site = installed_wheel(tmp_path)
    assert (site / 'localmim' / '.mim' / 'tools' / 'train.py').is_file()
    fmnist = tmp_path / 'fmnist'
    write_tiny_fashion_mnist(str(fmnist))
    cfg = load_config(osp.join(CONFIGS, 'toy_regression.py'), work_dir=str(tmp_path / 'toy'))
    cfg.experiment_name = 'mim_toy_reference'
    build_runner(cfg).train()  # a checkpoint for `mim test`

    mim = osp.join(osp.dirname(sys.executable), 'mim')
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), TESTS_DIR]), OMP_NUM_THREADS='1')
    work_dir = tmp_path / 'train'
    commands = {
        'train': [mim, 'train', 'localmim', 'localmim_vit-tiny_fmnist.py', '--work-dir', str(work_dir),
                  '--max-epochs', '1', '--cfg-options', f'train_dataloader.dataset.data_root={fmnist}',
                  'train_dataloader.dataset.num_samples=16', 'train_dataloader.batch_size=4',
                  'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False'],
        'test': [mim, 'test', 'localmim', osp.join(CONFIGS, 'toy_regression.py'), '--checkpoint',
                 str(tmp_path / 'toy' / 'iter_6.pth'), '--work-dir', str(tmp_path / 'test')],
    }
    processes = {name: subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
                 for name, command in commands.items()}  # both at once: their start-ups overlap
    results = {}
    for name, process in processes.items():
        stdout, stderr = process.communicate(timeout=300)
        results[name] = subprocess.CompletedProcess(commands[name], process.returncode, stdout, stderr)
    trained, tested = results['train'], results['test']
    check(trained)
    assert 'localmim/.mim/configs/pretrain/localmim_vit-tiny_fmnist.py' in trained.stdout
    assert re.search(r'Epoch\(train\) \[1\]\[4/4\]', trained.stdout)
    assert load_checkpoint_file(work_dir / 'epoch_1.pth')['meta']['iter'] == 4
    check(tested)
    assert 'toy/mse:' in tested.stdout


# ------------------------------------------- a short start-up, TensorBoard, a shortened schedule
@pytest.fixture(scope='module')
def tensorboard_run(tmp_path_factory):
    """tools/train.py on the tiny LocalMIM config, shortened to 2 iterations, with --tensorboard
    and a reconstruction picture every iteration: (stdout, stderr, work dir)."""
    work_dir = tmp_path_factory.mktemp('tensorboard')
    config = work_dir / 'tiny_pictures.py'
    config.write_text(f"_base_ = '{osp.join(CONFIGS, 'localmim_tiny_resume.py')}'\n"
                      "custom_hooks = [dict(type='localmim.IterationSeedHook'),\n"
                      "                dict(type='localmim.ReconstructionHook', interval=1)]\n")
    result = check(train(config, work_dir, '--max-iters', '2', '--tensorboard'))
    return result.stdout, result.stderr, work_dir


def test_startup_prints_a_short_summary_and_logs_everything_to_the_file(tensorboard_run):
    stdout, stderr, work_dir = tensorboard_run
    lines = stdout.splitlines()
    first_iteration = next(i for i, line in enumerate(lines) if 'Iter(train) [1/2]' in line)
    assert first_iteration <= 5, '\n'.join(lines[:first_iteration])
    [log_file] = glob.glob(osp.join(work_dir, '*', '*.log'))
    assert f'environment, config and hook order: {log_file}' in lines[0]
    assert 'torch 2.' in lines[0] and 'seed 0' in lines[0]
    log = open(log_file).read()
    for full in ('System environment:', 'Config:', 'Hooks will be executed in the following order'):
        assert full in log and full not in stdout
    assert stderr == ''  # no dependency warnings


def test_tensorboard_gets_every_scale_loss_the_lr_and_reconstructions(tensorboard_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    _, _, work_dir = tensorboard_run
    [events] = glob.glob(osp.join(work_dir, '*', 'vis_data', 'events.out.tfevents.*'))
    accumulator = EventAccumulator(events, size_guidance={'images': 0, 'scalars': 0})
    accumulator.Reload()
    scalars = accumulator.Tags()['scalars']
    for tag in ('loss', 'loss_2px', 'loss_4px', 'loss_8px', 'loss_16px', 'lr'):
        assert [event.step for event in accumulator.Scalars(tag)] == [1, 2], tag
    logged = json.loads(open(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))[0])
                        .readline())
    assert accumulator.Scalars('loss_4px')[0].value == pytest.approx(logged['loss_4px'], rel=1e-6)
    assert set(scalars) >= {'loss', 'lr'}
    pictures = accumulator.Images('reconstruction')
    assert [picture.step for picture in pictures] == [1, 2]
    assert pictures[0].width > 4 * pictures[0].height  # inputs, then target | prediction x 4 scales


def test_max_iters_shortens_the_schedule_of_the_run(tensorboard_run):
    _, _, work_dir = tensorboard_run
    [config] = glob.glob(osp.join(work_dir, '*', 'vis_data', 'config.py'))
    cfg = Config.fromfile(config)
    assert cfg.train_cfg.max_iters == 2  # 8 in the config
    # the warm-up keeps 2 steps (a 1-step LinearLR never leaves start_factor); the cosine ends with the run
    assert [(s['begin'], s['end']) for s in cfg.param_scheduler] == [(0, 2), (1, 2)]


def test_mim_finds_this_checkouts_configs_in_the_editable_setup():
    # tools/setup_env.sh installs localmim editable and links the package into site-packages,
    # where mim looks for localmim/.mim: `mim train localmim NAME.py` then uses this checkout.
    from mim.utils import get_installed_path

    package = get_installed_path('localmim')
    config = osp.join(package, '.mim', 'configs', 'pretrain', 'localmim_vit-tiny_fmnist.py')
    assert osp.realpath(config) == osp.join(REPO_DIR, 'mm_configs', 'pretrain', 'localmim_vit-tiny_fmnist.py')
    assert osp.isfile(osp.join(package, '.mim', 'tools', 'train.py'))
