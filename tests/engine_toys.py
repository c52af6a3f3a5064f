"""Tiny deterministic components and fault injectors for the engine tests, loaded by configs via
``custom_imports``.

They register into mmengine's root registries, so configs whose default scope is mmdet, mmseg,
localmim or none all find them.
"""
import json
import os
import os.path as osp
import signal

import torch
import torch.nn as nn
from mmengine.dist import get_rank
from mmengine.evaluator import BaseMetric
from mmengine.fileio import LocalBackend
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.registry import DATASETS, HOOKS, METRICS, MODELS
from torch.utils.data import Dataset


@DATASETS.register_module()
class ToyRegressionDataset(Dataset):
    """``size`` samples ``inputs`` (4,) ~ N(0, 1), ``target`` (2,) = tanh(inputs @ W), W fixed."""

    def __init__(self, size=16, seed=0):
        generator = torch.Generator().manual_seed(seed)
        weight = torch.randn(4, 2, generator=torch.Generator().manual_seed(1234))
        self.inputs = torch.randn(size, 4, generator=generator)
        self.targets = torch.tanh(self.inputs @ weight)

    def __len__(self):
        return len(self.inputs)

    def __getitem__(self, index):
        return dict(inputs=self.inputs[index], target=self.targets[index])


@MODELS.register_module()
class ToyRegressor(BaseModel):
    """Linear(4, 8) -> tanh -> Linear(8, 2), mean squared error loss.

    In training a random ``drop_ratio`` of the inputs is zeroed (global torch generator), like
    the random masks of masked image modeling.
    """

    def __init__(self, drop_ratio=0.25):
        super().__init__()
        self.drop_ratio = drop_ratio
        self.net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))

    def forward(self, inputs, target=None, mode='tensor'):
        if mode == 'loss':
            keep = torch.rand(inputs.shape) >= self.drop_ratio
            pred = self.net(inputs * keep)  # (B, 2)
            return dict(loss=((pred - target) ** 2).mean())
        pred = self.net(inputs)
        if mode == 'predict':
            return [dict(pred=p) for p in pred]
        return pred


@METRICS.register_module()
class ToyMSEMetric(BaseMetric):
    """Mean squared error of ``pred`` against the batch's ``target``, as ``toy/mse``."""
    default_prefix = 'toy'

    def process(self, data_batch, data_samples):
        for target, sample in zip(data_batch['target'], data_samples):
            self.results.append(((sample['pred'] - target) ** 2).sum().item())

    def compute_metrics(self, results):
        return dict(mse=sum(results) / (2 * len(results)))


@HOOKS.register_module()
class ToyLossRecorderHook(Hook):
    """Appends ``<iter> <loss repr>`` to ``<work_dir>/losses_rank<rank>.txt`` after each iter."""

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        with open(osp.join(runner.work_dir, f'losses_rank{get_rank()}.txt'), 'a') as file:
            file.write(f'{runner.iter + 1} {outputs["loss"].item()!r}\n')


@HOOKS.register_module()
class ToyWeightDumpHook(Hook):
    """After training, writes all parameters flattened to ``<work_dir>/weights_rank<rank>.json``."""

    def after_train(self, runner):
        model = runner.model.module if hasattr(runner.model, 'module') else runner.model
        flat = torch.cat([p.detach().flatten() for p in model.parameters()])
        with open(osp.join(runner.work_dir, f'weights_rank{get_rank()}.json'), 'w') as file:
            json.dump(flat.tolist(), file)


@HOOKS.register_module()
class ToyKillDuringSaveHook(Hook):
    """SIGKILLs the process halfway through writing the checkpoint of iteration ``at_iter``."""
    priority = 'LOWEST'

    def __init__(self, at_iter):
        self.at_iter = at_iter

    def before_save_checkpoint(self, runner, checkpoint):
        if checkpoint['meta']['iter'] != self.at_iter:
            return

        def put_half_then_die(backend, obj, filepath):
            with open(filepath, 'wb') as file:
                file.write(obj[:len(obj) // 2])
                file.flush()
                os.fsync(file.fileno())
            os.kill(os.getpid(), signal.SIGKILL)

        LocalBackend.put = put_half_then_die


@HOOKS.register_module()
class NaNImageHook(Hook):
    """Turns the batch of training iteration ``at_iter`` (1-based) into float images and sets
    one pixel of its first image to NaN, as a corrupt sample would; on ``ranks`` only (default:
    every rank)."""

    def __init__(self, at_iter, ranks=None):
        self.at_iter, self.ranks = at_iter, ranks

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter + 1 != self.at_iter or (self.ranks is not None and get_rank() not in self.ranks):
            return
        images = [image.float() for image in data_batch['inputs']]
        images[0][0, 0, 0] = float('nan')
        data_batch['inputs'] = images


@HOOKS.register_module()
class ToyKillAtIterHook(Hook):
    """SIGKILLs the process right after training iteration ``at_iter`` (1-based) is logged."""
    priority = 'LOWEST'

    def __init__(self, at_iter):
        self.at_iter = at_iter

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == self.at_iter:
            os.kill(os.getpid(), signal.SIGKILL)


@HOOKS.register_module()
class GradOverflowHook(Hook):
    """Makes the gradient of parameter ``name`` infinite in training iteration ``at_iter``
    (1-based), as an fp16 overflow would, and records the loss scale and that parameter before
    and after each iteration in ``self.records``: [(iteration, scale before, scale after,
    parameter before, parameter after)]."""

    def __init__(self, at_iter, name):
        self.at_iter, self.name, self.records = at_iter, name, []

    def _param(self, runner):
        model = runner.model.module if hasattr(runner.model, 'module') else runner.model
        return model.get_parameter(self.name)

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        param = self._param(runner)
        self._before = (runner.optim_wrapper.loss_scaler.get_scale(), param.detach().clone())
        if runner.iter + 1 == self.at_iter:
            handle = param.register_hook(lambda grad: (handle.remove(), grad * float('inf'))[1])

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        scale, param = self._before
        self.records.append((runner.iter + 1, scale, runner.optim_wrapper.loss_scaler.get_scale(),
                             param, self._param(runner).detach().clone()))


@HOOKS.register_module()
class NaNWeightHook(Hook):
    """After training iteration ``at_iter`` (1-based), sets one value of parameter ``name`` to
    NaN (before the checkpoint of that iteration is written)."""

    def __init__(self, at_iter, name):
        self.at_iter, self.name = at_iter, name

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == self.at_iter:
            model = runner.model.module if hasattr(runner.model, 'module') else runner.model
            with torch.no_grad():
                model.get_parameter(self.name).view(-1)[0] = float('nan')
