"""Mixed precision off the GPU: ``localmim.AmpOptimWrapper`` (bf16 autocast on CPU, fp16 with a
loss scaler where forced), run through mmengine's Runner with the shipped configs' loops.

- the tiny ViT and Swin LocalMIM pretraining and a tiny fine-tune train a few iterations under
  bf16 autocast (checked inside the model: matmul outputs are bf16, HOG targets stay fp32);
- fp16 + torch's CPU GradScaler with an injected gradient overflow skips that step and halves
  the scale;
- ``tools/train.py --amp`` and the shipped configs' ``AmpOptimWrapper`` pick it; bad dtypes get
  one clear error.
"""
import copy
import os.path as osp
import runpy
import sys
import uuid

import pytest
import torch
from _data_helpers import real_fashion_mnist_present
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
from mmengine.structures import BaseDataElement

from localmim.engine import AmpOptimWrapper
from localmim.engine.amp import autocast_dtype
from localmim.engine.launch import build_runner, run_tool
from localmim.registry import build_model

TESTS_DIR = osp.dirname(osp.abspath(__file__))
REPO_DIR = osp.dirname(TESTS_DIR)
CONFIGS = osp.join(REPO_DIR, 'mm_configs')
TINY_VIT = osp.join(TESTS_DIR, 'configs', 'localmim_tiny_epochs.py')
if TESTS_DIR not in sys.path:
    sys.path.insert(0, TESTS_DIR)
from engine_toys import GradOverflowHook  # noqa: E402

needs_fmnist = pytest.mark.skipif(not real_fashion_mnist_present(), reason='needs dataset-fashion-mnist')


class DtypeProbe(Hook):
    """Records the dtype of the first Linear's output (in training) and of the targets."""

    def __init__(self):
        self.linear, self.targets = set(), set()

    def before_train(self, runner):
        model = runner.model.module if hasattr(runner.model, 'module') else runner.model
        linear = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))

        def record(module, args, output):
            if module.training:
                self.linear.add(output.dtype)
        linear.register_forward_hook(record)
        if hasattr(model, 'target'):
            model.target.register_forward_hook(lambda m, a, out: self.targets.update(t.dtype for t in out))


def amp_runner(config, tmp_path, options, dtype='auto', loss_scale='dynamic'):
    cfg = Config.fromfile(config)
    cfg.merge_from_dict(options)
    cfg.optim_wrapper.type = 'AmpOptimWrapper'
    cfg.optim_wrapper.update(dtype=dtype, loss_scale=loss_scale)
    cfg.work_dir = str(tmp_path)
    cfg.experiment_name = f'amp_{uuid.uuid4().hex}'
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1000)
    cfg.custom_hooks = [dict(type='localmim.IterationSeedHook')]
    return build_runner(cfg)


LOADER = {'train_dataloader.num_workers': 0, 'train_dataloader.persistent_workers': False}
RUNS = {
    'vit_pretrain': (TINY_VIT, {'train_cfg.max_epochs': 1, **LOADER}),
    'swin_pretrain': (osp.join(CONFIGS, 'pretrain', 'swin_localmim-tiny_fmnist.py'), {
        'train_dataloader.dataset.num_samples': 4, 'train_dataloader.batch_size': 2, 'train_cfg.max_epochs': 1,
        **LOADER}),
    'vit_finetune': (osp.join(CONFIGS, 'imagenet', 'vit-tiny_ft_fmnist.py'), {
        'train_dataloader.dataset.num_samples': 8, 'train_dataloader.batch_size': 4, 'train_cfg.max_epochs': 1,
        'val_dataloader.dataset.num_samples': 8, 'val_dataloader.num_workers': 0,
        'val_dataloader.persistent_workers': False, 'model.backbone.depth': 2, **LOADER}),
}


@needs_fmnist
@pytest.mark.parametrize('name', list(RUNS))
def test_bf16_autocast_trains_on_cpu(name, tmp_path):
    config, options = RUNS[name]
    runner = amp_runner(config, tmp_path, options)
    probe = DtypeProbe()
    runner.register_hook(probe)
    runner.train()
    wrapper = runner.optim_wrapper
    assert isinstance(wrapper, AmpOptimWrapper)
    assert wrapper.cast_dtype == torch.bfloat16 and wrapper.loss_scaler is None
    assert probe.linear == {torch.bfloat16}  # autocast was on in the forward
    if name.endswith('pretrain'):
        assert probe.targets == {torch.float32}  # targets never in bf16
    losses = runner.message_hub.log_scalars['train/loss'].data[0]
    assert runner.iter >= 2 and len(losses) == runner.iter and all(map(torch.isfinite, torch.as_tensor(losses)))
    assert 'loss_scaler' not in wrapper.state_dict()


def test_bf16_loss_is_close_to_fp32_on_the_same_weights_and_batch():
    cfg = Config.fromfile(TINY_VIT)
    torch.manual_seed(0)
    model = build_model(cfg.model)
    images = [torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8) for _ in range(4)]
    data = model.data_preprocessor(dict(inputs=images), True)
    mask = model.get_mask(data['inputs'])
    samples = [BaseDataElement(mask=m) for m in mask]  # the same mask for both runs
    fp32 = model.loss(data['inputs'], samples)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        bf16 = model.loss(data['inputs'], samples)
    for key in fp32:
        assert bf16[key].dtype == torch.float32
        assert bf16[key].item() == pytest.approx(fp32[key].item(), rel=0.02), key


@needs_fmnist
def test_fp16_overflow_skips_the_step_and_halves_the_scale(tmp_path):
    # a modest initial scale: 65536 (the default) overflows fp16 on its own at the first step
    runner = amp_runner(TINY_VIT, tmp_path, {'train_cfg.max_epochs': 1, **LOADER}, dtype='float16',
                        loss_scale=dict(init_scale=1024.))
    overflow = GradOverflowHook(at_iter=2, name='decoders.0.embed.weight')
    runner.register_hook(overflow)
    runner.train()
    assert isinstance(runner.optim_wrapper.loss_scaler, torch.amp.GradScaler)
    assert runner.optim_wrapper.cast_dtype == torch.float16
    records = {it: rest for it, *rest in overflow.records}
    assert sorted(records) == [1, 2, 3, 4]
    for iteration, (scale_before, scale_after, before, after) in records.items():
        if iteration == 2:  # overflow: no update at all, scale halved
            assert (scale_before, scale_after) == (1024.0, 512.0)
            assert torch.equal(before, after)
        else:
            assert scale_after == scale_before  # growth only after 2000 clean steps
            assert not torch.equal(before, after)
    assert runner.optim_wrapper.state_dict()['loss_scaler']['scale'] == 512.0


def test_shipped_amp_configs_build_the_bf16_wrapper_on_cpu():
    # The shipped full-size recipes ask for AmpOptimWrapper; mmengine's refuses to start on CPU.
    model = build_model(Config.fromfile(TINY_VIT).model)  # (layer-decay groups need an encoder)
    for config in ('pretrain/localmim_vit-b_1600e_in1k.py', 'imagenet/vit-base_ft_in1k.py'):
        cfg = Config.fromfile(osp.join(CONFIGS, config))
        with DefaultScope.overwrite_default_scope(cfg.default_scope):
            wrapper = build_optim_wrapper(model, copy.deepcopy(cfg.optim_wrapper))
        assert type(wrapper) is AmpOptimWrapper, config
        assert wrapper.cast_dtype == torch.bfloat16 and wrapper.loss_scaler is None
    cfg = Config.fromfile(osp.join(CONFIGS, 'coco', 'mask-rcnn_localmim-vit-b_simplefpn_lsj-1024-100e_coco.py'))
    assert cfg.optim_wrapper.type == 'localmim.AmpOptimWrapper'  # mmdet scope: named with its scope


def test_tools_train_amp_switches_to_the_localmim_wrapper():
    enable_amp = runpy.run_path(osp.join(REPO_DIR, 'tools', 'train.py'))['enable_amp']
    cfg = Config.fromfile(TINY_VIT)
    assert cfg.optim_wrapper.type == 'OptimWrapper'
    enable_amp(cfg)
    assert cfg.optim_wrapper.type == 'localmim.AmpOptimWrapper' and cfg.optim_wrapper.dtype == 'auto'


def test_autocast_dtype_choices_and_errors(monkeypatch):
    assert autocast_dtype('auto', 'cpu') == torch.bfloat16
    assert autocast_dtype(None, 'cpu') == torch.bfloat16
    assert autocast_dtype('float16', 'cpu') == torch.float16
    monkeypatch.setattr(torch.cuda, 'is_bf16_supported', lambda including_emulation=True: False)
    assert autocast_dtype('auto', 'cuda') == torch.float16  # e.g. a V100
    with pytest.raises(ValueError, match=r"^optim_wrapper.dtype='bfloat16' but this cuda device has no native "
                       r"bfloat16: set optim_wrapper.dtype='float16' \(with loss scaling\) or 'auto'$"):
        autocast_dtype('bfloat16', 'cuda')
    with pytest.raises(ValueError, match=r"^optim_wrapper.dtype='float32' is not a mixed-precision dtype"):
        AmpOptimWrapper(optimizer=torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.1), dtype='float32')


# ------------------------------------------------------------------ strategies that cannot run here
def train_error_line(capsys, *argv):
    main = runpy.run_path(osp.join(REPO_DIR, 'tools', 'train.py'))['main']
    with pytest.raises(SystemExit) as exit_info:
        run_tool(main, [*map(str, argv)])
    assert exit_info.value.code == 1
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_a_strategy_whose_package_is_missing_says_what_to_set_instead(tmp_path, capsys):
    line = train_error_line(capsys, TINY_VIT, '--work-dir', tmp_path, '--cfg-options', 'runner_type=FlexibleRunner',
                            'strategy.type=DeepSpeedStrategy')
    assert line.startswith('error: strategy DeepSpeedStrategy needs the deepspeed package (pip install '
                           "deepspeed); or shard with strategy=dict(type='FSDPStrategy')")


@pytest.mark.skipif(torch.cuda.is_available(), reason='the error is for machines without CUDA')
def test_fsdp_without_gpus_points_to_ddp(tmp_path, capsys):
    config = osp.join(CONFIGS, 'pretrain', 'localmim_vit-h_fsdp_800e_in1k.py')
    line = train_error_line(capsys, config, '--work-dir', tmp_path, '--launcher', 'pytorch')
    assert line == ('error: strategy FSDPStrategy (FlexibleRunner) needs GPUs to start its process group; '
                    'without CUDA drop runner_type and strategy: localmim.Runner runs DDP over gloo')
