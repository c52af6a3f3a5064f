"""Reliability: exact resume after a SIGKILL, non-finite losses and weights, one clear error per
bad input (data root, annotation file, image, input size, checkpoint keys, config types).

The pretraining runs are the real LocalMIM through ``tools/train.py``
(tests/configs/localmim_tiny_resume.py: 8 Fashion-MNIST images at 32 px, a 4-block ViT of width
32, 6 iterations, a checkpoint every 2); fault injectors come from tests/engine_toys.py. The
subprocess runs start together (``runs`` fixture) so that their start-up overlaps; the other
checks run the tools' ``main`` in-process through the same error reporting (``run_tool``).
"""
import glob
import json
import os
import os.path as osp
import runpy
import subprocess
import sys
import uuid

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.logging import MessageHub
from mmengine.optim import OptimWrapper
from mmengine.registry import WEIGHT_INITIALIZERS, DefaultScope
from PIL import Image

from localmim.checkpoint import CheckpointError, PretrainedInit, load_checkpoint_file
from localmim.engine.launch import UnknownTypeError, build_runner, run_tool
from localmim.models.vit import VisionTransformer
from localmim.registry import build_model

TESTS_DIR = osp.dirname(osp.abspath(__file__))
REPO_DIR = osp.dirname(TESTS_DIR)
CONFIGS = osp.join(TESTS_DIR, 'configs')
TINY = osp.join(CONFIGS, 'localmim_tiny_resume.py')
TOY = osp.join(CONFIGS, 'toy_regression.py')
NAN_CONFIG = osp.join(CONFIGS, 'localmim_tiny_nan.py')  # a NaN pixel at iteration 3
# the shipped epoch-based recipe (2 persistent workers, SeededSampler), tiny: 3 epochs of 4 iterations
EPOCHS = osp.join(CONFIGS, 'localmim_tiny_epochs.py')
SCALE_LOSSES = ['loss_2px', 'loss_4px', 'loss_8px', 'loss_16px']
if TESTS_DIR not in sys.path:  # configs import tests/engine_toys.py
    sys.path.insert(0, TESTS_DIR)


# ------------------------------------------------------------------------------ subprocesses
class Job:
    """A tool run in a subprocess; stdout/stderr go to files (no pipe can fill up and block)."""

    def __init__(self, log_dir, name, tool, *args):
        self.out, self.err = osp.join(log_dir, f'{name}.out'), osp.join(log_dir, f'{name}.err')
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO_DIR, TESTS_DIR]),
                   OMP_NUM_THREADS='1')
        env.pop('LOCALMIM_DEBUG', None)
        with open(self.out, 'w') as out, open(self.err, 'w') as err:
            self.process = subprocess.Popen([sys.executable, f'tools/{tool}.py', *map(str, args)],
                                            cwd=REPO_DIR, env=env, stdout=out, stderr=err)

    def result(self):
        returncode = self.process.wait(timeout=300)
        return returncode, open(self.out).read(), open(self.err).read()


def last_line(text):
    return text.strip().splitlines()[-1]


def scale_losses(work_dir):
    """{iteration: {loss name: value}} of every run logged in ``work_dir`` (later runs win)."""
    losses = {}
    for path in sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))):
        with open(path) as file:
            for record in map(json.loads, file):
                losses[record['step']] = {k: v for k, v in record.items() if k.startswith('loss')}
    return losses


def state_dict(path):
    return load_checkpoint_file(path)['state_dict']


def tool_error(tool, *argv):
    """The last stderr line of ``tools/<tool>.py argv`` run in-process through ``run_tool``,
    asserting exit status 1; or the exception itself if ``--debug`` is given."""
    main = runpy.run_path(osp.join(REPO_DIR, 'tools', f'{tool}.py'))['main']
    argv = [*map(str, argv), '--cfg-options', f'experiment_name=e{uuid.uuid4().hex}']
    with pytest.raises(SystemExit) as exit_info:
        run_tool(main, argv)
    assert exit_info.value.code == 1
    return exit_info


@pytest.fixture
def train_error(capsys, tmp_path):
    def error_line(config, *options):
        tool_error('train', config, '--work-dir', tmp_path / 'work', *options)
        return last_line(capsys.readouterr().err)
    return error_line


@pytest.fixture(autouse=True)
def one_thread_and_restored_determinism():
    """Tiny models run fastest on one thread (no OpenMP barriers on a busy machine); in-process
    runs of the tiny config switch torch's deterministic algorithms on, and this restores them."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic)


@pytest.fixture(scope='module', autouse=True)
def runs(tmp_path_factory):
    """The subprocess runs, started before the module's first test so that they run while
    the in-process tests do: {name: (Job, work dir)}."""
    root = tmp_path_factory.mktemp('runs')
    specs = {
        'killed': (osp.join(CONFIGS, 'localmim_tiny_killed.py'), ),
        'unknown_type': (TINY, '--cfg-options', 'model.encoder.type=VisionTransformr'),
        'epochs': (EPOCHS, ),
        'epochs_killed': (osp.join(CONFIGS, 'localmim_tiny_epochs_killed.py'), ),
    }
    jobs = {}
    for name, args in specs.items():
        work_dir = root / name
        jobs[name] = (Job(root, name, 'train', *args, '--work-dir', work_dir), work_dir)
    yield jobs
    for job, _ in jobs.values():
        if job.process.poll() is None:
            job.process.kill()


def test_every_pretraining_config_reseeds_each_iteration():
    for path in sorted(glob.glob(osp.join(REPO_DIR, 'mm_configs', 'pretrain', '*.py'))):
        hooks = [hook['type'] for hook in Config.fromfile(path).get('custom_hooks', [])]
        assert 'localmim.IterationSeedHook' in hooks, path


# ------------------------------------------------------------------------ non-finite losses
def test_nan_image_stops_the_run_naming_iteration_and_scales(train_error, tmp_path):
    line = train_error(NAN_CONFIG)
    assert line == ('error: non-finite LocalMIM loss at iteration 3: loss_2px=nan, '
                    'loss_4px=nan, loss_8px=nan, loss_16px=nan')
    work_dir = tmp_path / 'work'
    assert open(work_dir / 'last_checkpoint').read() == str(work_dir / 'iter_2.pth')
    assert sorted(p.name for p in work_dir.glob('*.pth')) == ['iter_2.pth']


def test_nan_image_with_skip_leaves_the_weights_of_that_step_unchanged(tmp_path, capsys):
    main = runpy.run_path(osp.join(REPO_DIR, 'tools', 'train.py'))['main']
    run_tool(main, [NAN_CONFIG, '--work-dir', str(tmp_path), '--cfg-options',
                    'model.nonfinite=skip', 'default_hooks.checkpoint.interval=1',
                    'train_cfg.max_iters=4', f'experiment_name=e{uuid.uuid4().hex}'])
    assert ('skipped the update of iteration 3: non-finite LocalMIM loss loss_2px=nan'
            in capsys.readouterr().out)
    weights = {i: state_dict(tmp_path / f'iter_{i}.pth') for i in (2, 3, 4)}
    assert all(torch.equal(weights[3][key], weights[2][key]) for key in weights[2])
    assert not all(torch.equal(weights[4][key], weights[3][key]) for key in weights[3])
    assert all(torch.isfinite(value).all() for value in weights[4].values()
               if value.is_floating_point())
    losses = scale_losses(tmp_path)
    assert losses[3] == dict.fromkeys(['loss', *SCALE_LOSSES], 0.0)
    assert all(losses[i][name] > 0 for i in (2, 4) for name in SCALE_LOSSES)


def tiny_localmim():
    torch.manual_seed(0)
    return build_model(Config.fromfile(TINY).model)


def image_batch(bad_value=None):
    """Two 32x32 images as the data loader gives them (uint8 CHW), the first with one bad pixel."""
    images = [torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8) for _ in range(2)]
    if bad_value is not None:
        images = [image.float() for image in images]
        images[0][1, 5, 7] = bad_value
    return dict(inputs=images)


@pytest.mark.parametrize('bad_value', [float('nan'), float('inf')])
def test_train_step_with_a_nonfinite_batch_raises_or_skips(bad_value):
    model = tiny_localmim()
    optim_wrapper = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-3))
    MessageHub.get_instance(f'nonfinite_{uuid.uuid4().hex}').update_info('iter', 6)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(FloatingPointError, match=r'^non-finite LocalMIM loss at iteration 7: '
                       r'loss_2px=(nan|inf), loss_4px=(nan|inf), '):
        model.train_step(image_batch(bad_value), optim_wrapper)

    model.nonfinite = 'skip'
    outputs = model.train_step(image_batch(bad_value), optim_wrapper)
    assert all(outputs[name] == 0 for name in SCALE_LOSSES)
    assert all(torch.equal(value, before[key]) for key, value in model.state_dict().items())
    assert optim_wrapper.optimizer.state == {}  # no AdamW step was taken
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())
    outputs = model.train_step(image_batch(), optim_wrapper)  # a finite batch still trains
    assert all(outputs[name] > 0 for name in SCALE_LOSSES)
    assert not torch.equal(model.state_dict()['decoders.0.embed.weight'],
                           before['decoders.0.embed.weight'])


# ------------------------------------------------------------ checkpoints: saving and pruning
def toy_runner(work_dir, max_iters=6, hooks=(), **overrides):
    cfg = Config.fromfile(TOY)
    cfg.work_dir = str(work_dir)
    cfg.train_cfg.max_iters = max_iters
    cfg.custom_hooks = list(hooks)
    cfg.experiment_name = f'toy_{uuid.uuid4().hex}'  # fresh logger / message hub instances
    cfg.merge_from_dict(overrides)
    return build_runner(cfg)


def test_checkpoint_with_nonfinite_weights_is_refused_and_the_previous_stays(tmp_path):
    runner = toy_runner(tmp_path, hooks=[dict(type='NaNWeightHook', at_iter=4,
                                              name='net.2.bias')],
                        default_hooks=dict(checkpoint=dict(max_keep_ckpts=1)))
    with pytest.raises(FloatingPointError) as error:
        runner.train()
    assert str(error.value) == (
        f'refusing to save checkpoint {tmp_path / "iter_4.pth"}: model weight net.2.bias has 1 '
        'non-finite (NaN/inf) values; nothing was written and the previous checkpoint stays '
        'the latest')
    # max_keep_ckpts=1, yet iter_2.pth survives: it would only go once iter_4.pth is complete.
    assert sorted(p.name for p in tmp_path.iterdir() if 'iter' in p.name) == ['iter_2.pth']
    assert open(tmp_path / 'last_checkpoint').read() == str(tmp_path / 'iter_2.pth')
    assert torch.isfinite(state_dict(tmp_path / 'iter_2.pth')['net.2.bias']).all()


class RecordCheckpointsOnSave(Hook):
    """Records the checkpoint files present when each checkpoint is about to be written."""

    def __init__(self):
        self.present = []

    def before_save_checkpoint(self, runner, checkpoint):
        self.present.append(sorted(name for name in os.listdir(runner.work_dir)
                                   if name.startswith('iter_')))


def test_max_keep_ckpts_prunes_only_after_the_new_checkpoint_is_written(tmp_path):
    recorder = RecordCheckpointsOnSave()
    runner = toy_runner(tmp_path, default_hooks=dict(checkpoint=dict(max_keep_ckpts=1)))
    runner.register_hook(recorder)
    runner.train()
    assert type(runner.hooks[-1]).__module__ == 'localmim.engine.checkpoint_hook'
    assert recorder.present == [[], ['iter_2.pth'], ['iter_4.pth']]
    assert sorted(p.name for p in tmp_path.glob('iter_*')) == ['iter_6.pth']
    saved = load_checkpoint_file(tmp_path / 'iter_6.pth')
    assert saved['message_hub']['runtime_info']['keep_ckpt_ids'] == [6]

    resumed = toy_runner(tmp_path, max_iters=10, resume=True,
                         default_hooks=dict(checkpoint=dict(max_keep_ckpts=2)))
    resumed.train()
    assert sorted(p.name for p in tmp_path.glob('iter_*')) == ['iter_10.pth', 'iter_8.pth']
    saved = load_checkpoint_file(tmp_path / 'iter_10.pth')
    assert saved['message_hub']['runtime_info']['keep_ckpt_ids'] == [8, 10]


# -------------------------------------------------------------- checkpoints: key matching
def test_tools_test_with_a_checkpoint_matching_no_key_gives_one_error(tmp_path, capsys):
    unrelated = tmp_path / 'unrelated.pth'
    torch.save({'state_dict': {'encoder.weight': torch.ones(2, 2)}}, unrelated)
    tool_error('test', TOY, unrelated, '--work-dir', tmp_path)
    assert last_line(capsys.readouterr().err) == (
        f'error: no key of checkpoint {unrelated} matches the model: its 1 keys look like '
        'encoder.weight, the model\'s 4 like net.0.weight, net.0.bias, net.2.weight, ... '
        '(4 in all) (a checkpoint of another model, or another key prefix?)')


def test_load_from_with_some_keys_matching_loads_them_and_warns(tmp_path, capsys):
    weight = torch.full((8, 4), 0.5)
    torch.save({'state_dict': {'module.net.0.weight': weight, 'head.weight': torch.ones(1)}},
               tmp_path / 'partial.pth')
    runner = toy_runner(tmp_path, max_iters=0, load_from=str(tmp_path / 'partial.pth'))
    runner.load_or_resume()
    assert torch.equal(runner.model.net[0].weight, weight)  # 'module.' stripped, then loaded
    assert (f'checkpoint {tmp_path / "partial.pth"} matches 1 of the model\'s 4 keys; not in '
            'the checkpoint: net.0.bias, net.2.weight, net.2.bias; not in the model: '
            'head.weight') in capsys.readouterr().out


def test_pretrained_init_cfg_refuses_a_checkpoint_matching_nothing(tmp_path):
    vit = dict(arch=None, img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2)
    source = VisionTransformer(**vit)
    path = str(tmp_path / 'pretrain.pth')
    torch.save({'state_dict': {f'encoder.{k}': v for k, v in source.state_dict().items()}}, path)

    with pytest.raises(CheckpointError, match=f'^no key of checkpoint {path} matches the model: '
                       r'its 30 keys look like encoder\.cls_token, encoder\.pos_embed'):
        VisionTransformer(**vit, init_cfg=dict(type='Pretrained', checkpoint=path)).init_weights()
    with pytest.raises(CheckpointError, match=f"^no key of checkpoint {path} starts with the "
                       r"prefix 'backbone\.': its keys look like encoder\.cls_token"):
        VisionTransformer(**vit, init_cfg=dict(type='Pretrained', checkpoint=path,
                                               prefix='backbone.')).init_weights()
    loaded = VisionTransformer(**vit, init_cfg=dict(type='Pretrained', checkpoint=path,
                                                    prefix='encoder.'))
    loaded.init_weights()
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    for scope in ('localmim', 'mmengine', 'mmdet'):  # the one 'Pretrained' in every scope
        with DefaultScope.overwrite_default_scope(scope):
            assert type(WEIGHT_INITIALIZERS.build(dict(type='Pretrained', checkpoint=path))) \
                is PretrainedInit


# ------------------------------------------------------------------- one clear error per input
def write_config(path, text):
    path.write_text(f"_base_ = '{TINY}'\n" + text)
    return path


@pytest.mark.parametrize('option, key, suggestion', [
    ('default_hooks.checkpoint.type=CheckpointHok', 'default_hooks.checkpoint.type',
     '"CheckpointHook"'),
    ('train_dataloader.dataset.type=FashionMnist', 'train_dataloader.dataset.type',
     '"localmim.FashionMNIST"'),
    ('optim_wrapper.optimizer.type=AdamWW', 'optim_wrapper.optimizer.type', '"AdamW"'),
])
def test_unknown_types_name_their_key_and_the_closest_names(train_error, option, key,
                                                            suggestion):
    wrong = option.split('=')[1]
    line = train_error(TINY, '--cfg-options', option)
    assert line.startswith(f'error: unknown type "{wrong}" at {key} in {TINY} (not in the ')
    assert 'did you mean ' in line and suggestion in line.split('did you mean ')[1]


def test_debug_flag_shows_the_exception_instead(tmp_path):
    main = runpy.run_path(osp.join(REPO_DIR, 'tools', 'train.py'))['main']
    with pytest.raises(UnknownTypeError) as error:
        run_tool(main, [TINY, '--work-dir', str(tmp_path), '--debug', '--cfg-options',
                        'model.encoder.type=VisionTransformr'])
    assert isinstance(error.value, KeyError)
    assert error.value.__cause__ is not None  # mmengine's registry KeyError, kept for --debug


def test_missing_data_root(train_error, tmp_path):
    missing = tmp_path / 'no_such_dir'
    line = train_error(TINY, '--cfg-options', f'train_dataloader.dataset.data_root={missing}')
    assert line.startswith(f"error: Fashion-MNIST root '{missing}' does not exist.")


def test_empty_dataset_folder_is_named(train_error, tmp_path):
    # mmseg's dataset on an empty folder: mmengine fails with "need at least one array to concatenate"
    for folder in ('images/training', 'annotations/training'):
        (tmp_path / 'canvas' / folder).mkdir(parents=True)
    config = osp.join(REPO_DIR, 'mm_configs', 'ade20k', 'upernet_vit-tiny_fmnist-canvas.py')
    line = train_error(config, '--cfg-options', f'train_dataloader.dataset.data_root={tmp_path / "canvas"}')
    assert line == (f'error: the dataset of train_dataloader has no samples: {tmp_path}/canvas/images/training '
                    f'is empty, {tmp_path}/canvas/annotations/training is empty')


def imagenet_config(tmp_path, dataset_options=''):
    return write_config(tmp_path / 'imagenet_cfg.py', f"""
train_dataloader = dict(batch_size=2, dataset=dict(
    _delete_=True, type='ImageNet', data_root='{tmp_path / "imagenet"}', split='train',
    pipeline=[dict(type='LoadImage'), dict(type='Resize', size=32), dict(type='PackInputs')],
    {dataset_options}))
""")


def test_missing_annotation_file(train_error, tmp_path):
    (tmp_path / 'imagenet' / 'train' / 'cat').mkdir(parents=True)
    line = train_error(imagenet_config(tmp_path, "ann_file='meta/train.txt'"))
    assert line == ('error: ImageNet annotation file not found: '
                    f'{tmp_path / "imagenet" / "meta" / "train.txt"}')


def test_truncated_image_is_named_from_the_loader_worker(train_error, tmp_path):
    folder = tmp_path / 'imagenet' / 'train' / 'cat'
    folder.mkdir(parents=True)
    pixels = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(folder / 'good.png')
    Image.fromarray(pixels).save(folder / 'bad.png')
    data = (folder / 'bad.png').read_bytes()
    (folder / 'bad.png').write_bytes(data[:len(data) // 2])
    line = train_error(imagenet_config(tmp_path))  # num_workers=1: read in a worker process
    assert line.startswith(f'error: cannot read image file {folder / "bad.png"}: ')
    assert line.endswith('(in DataLoader worker process 0)')


def test_input_size_not_divisible_by_the_patch_size(train_error, tmp_path):
    vit = VisionTransformer(arch=None, img_size=32, patch_size=8, embed_dim=32, depth=1,
                            num_heads=2)
    with pytest.raises(ValueError, match='^input size 36x30 is not divisible by the patch size 8$'):
        vit(torch.zeros(1, 3, 36, 30))
    config = write_config(tmp_path / 'size36.py', """
train_dataloader = dict(dataset=dict(pipeline=[dict(type='Resize', size=36),
                                               dict(type='PackInputs')]))
""")
    line = train_error(config)  # LocalMIM checks it first, against its mask unit (= patch)
    assert line == 'error: input size 36x36 is not divisible by the mask unit of 8 px'


# ------------------------------------------------------- subprocess runs (started first)
def test_sigkill_mid_run_then_resume_logs_the_uninterrupted_losses(runs):
    # Up to the kill, halfway through writing iter_6.pth, the killed run is an uninterrupted one.
    job, work_dir = runs['killed']
    returncode, _, stderr = job.result()
    assert returncode == -9, stderr[-3000:]
    uninterrupted = scale_losses(work_dir)
    assert sorted(uninterrupted) == [1, 2, 3, 4, 5, 6]
    assert (work_dir / '.iter_6.pth.partial').exists() and not (work_dir / 'iter_6.pth').exists()
    assert open(work_dir / 'last_checkpoint').read() == str(work_dir / 'iter_4.pth')

    resumed = Job(work_dir, 'resumed', 'train', TINY, '--work-dir', work_dir, '--resume')
    returncode, stdout, stderr = resumed.result()
    assert returncode == 0, stderr[-3000:]
    assert f'Load checkpoint from {work_dir / "iter_4.pth"}' in stdout
    run = scale_losses(work_dir)
    assert sorted(run) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert set(run[5]) == {'loss', *SCALE_LOSSES}
    for step in (5, 6):  # re-run after the resume: the same losses, bit for bit
        assert run[step] == uninterrupted[step]
    assert run[5] != run[3] != run[1]  # (the losses do change from iteration to iteration)
    final = state_dict(work_dir / 'iter_8.pth')
    assert all(torch.isfinite(value).all() for value in final.values())


def test_epoch_based_run_killed_mid_epoch_resumes_with_the_uninterrupted_losses(runs):
    # The shipped loop and loader: epoch-based, 2 persistent workers, checkpoints at epoch ends.
    # Killed after iteration 7 (mid epoch 2), resumed from epoch_1.pth: iterations 5-12 must log
    # what the uninterrupted run logged (workers restart, yet every sample is augmented alike).
    job, uninterrupted_dir = runs['epochs']
    returncode, _, stderr = job.result()
    assert returncode == 0, stderr[-3000:]
    uninterrupted = scale_losses(uninterrupted_dir)
    assert sorted(uninterrupted) == list(range(1, 13))

    job, work_dir = runs['epochs_killed']
    returncode, _, stderr = job.result()
    assert returncode == -9, stderr[-3000:]
    killed = scale_losses(work_dir)
    assert sorted(killed) == list(range(1, 8))
    assert all(killed[step] == uninterrupted[step] for step in killed)
    assert sorted(p.name for p in work_dir.glob('*.pth')) == ['epoch_1.pth']

    resumed = Job(work_dir, 'resumed', 'train', EPOCHS, '--work-dir', work_dir, '--resume')
    returncode, stdout, stderr = resumed.result()
    assert returncode == 0, stderr[-3000:]
    assert f'Load checkpoint from {work_dir / "epoch_1.pth"}' in stdout
    run = scale_losses(work_dir)  # the resumed run's records replace the killed run's 5-7
    assert sorted(run) == list(range(1, 13))
    for step in range(5, 13):
        assert run[step] == uninterrupted[step], step
    assert len({run[step]['loss'] for step in range(5, 13)}) == 8


def test_unknown_type_through_tools_train_suggests_the_registered_name(runs):
    job, _ = runs['unknown_type']
    returncode, _, stderr = job.result()
    assert returncode == 1, stderr[-3000:]
    assert last_line(stderr).startswith(
        f'error: unknown type "VisionTransformr" at model.encoder.type in {TINY} (not in the '
        'localmim::model registry): did you mean "localmim.VisionTransformer"')
    assert 'Traceback' not in stderr
