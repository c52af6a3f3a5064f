"""``localmim.AmpOptimWrapper``: mixed precision on every device, bf16 where it is native.

mmengine's ``AmpOptimWrapper`` refuses to start without a GPU and always builds a loss scaler.
This one (registered in the localmim scope under the same name, so ``type='AmpOptimWrapper'`` in
localmim-scope configs and ``--amp`` pick it; mmdet/mmseg-scope configs say
``type='localmim.AmpOptimWrapper'``) chooses the autocast dtype from the device:

| device                                 | ``dtype='auto'`` (default) | loss scaling            |
|----------------------------------------|----------------------------|-------------------------|
| CPU                                    | bfloat16                   | none                    |
| CUDA with native bf16 (Ampere, Hopper) | bfloat16                   | none                    |
| CUDA without it (Volta, Turing), others| float16                    | ``loss_scale`` (dynamic)|

``dtype='bfloat16'`` or ``'float16'`` forces one (fp16 always with a loss scaler; on CPU too, with
torch's CPU ``GradScaler``). Targets are computed outside autocast by the models themselves.
"""
import contextlib

import torch
from mmengine.device import get_device
from mmengine.optim import AmpOptimWrapper as MMEngineAmpOptimWrapper
from mmengine.optim import OptimWrapper

from ..registry import OPTIM_WRAPPERS

__all__ = ['AmpOptimWrapper', 'autocast_dtype']

_DTYPES = {'bfloat16': torch.bfloat16, 'float16': torch.float16}


def autocast_dtype(dtype='auto', device_type=None):
    """The torch dtype that ``dtype`` ('auto', 'bfloat16', 'float16', a torch dtype or None = auto)
    means on ``device_type`` (default: mmengine's current device). Raises ``ValueError`` for an
    unknown dtype or bf16 on a GPU without native bf16, saying what to set instead."""
    device_type = device_type or get_device()
    native_bf16 = device_type == 'cpu' or (
        device_type == 'cuda' and torch.cuda.is_bf16_supported(including_emulation=False))
    if dtype is None or dtype == 'auto':
        return torch.bfloat16 if native_bf16 else torch.float16
    dtype = _DTYPES.get(dtype, dtype)
    if dtype not in _DTYPES.values():
        raise ValueError(f"optim_wrapper.dtype={dtype!r} is not a mixed-precision dtype: set "
                         "'auto' (bf16 where the device has it, else fp16), 'bfloat16' or 'float16'")
    if dtype == torch.bfloat16 and not native_bf16:
        raise ValueError(f"optim_wrapper.dtype='bfloat16' but this {device_type} device has no native "
                         "bfloat16: set optim_wrapper.dtype='float16' (with loss scaling) or 'auto'")
    return dtype


@OPTIM_WRAPPERS.register_module()
class AmpOptimWrapper(MMEngineAmpOptimWrapper):
    """Autocast to ``dtype`` in ``optim_context``; a loss scaler for float16 only.

    Args:
        loss_scale: float16 only: 'dynamic', a float (static scale) or ``GradScaler`` kwargs.
        dtype: 'auto' (default), 'bfloat16' or 'float16' (see the module doc).
        use_fsdp: use FSDP's sharded gradient scaler (float16).
        **kwargs: ``OptimWrapper`` arguments (optimizer, clip_grad, accumulative_counts).
    """

    def __init__(self, loss_scale='dynamic', dtype='auto', use_fsdp=False, **kwargs):
        OptimWrapper.__init__(self, **kwargs)  # mmengine's __init__ asserts a GPU
        self.device_type = get_device()
        self.cast_dtype = autocast_dtype(dtype, self.device_type)
        self._scale_update_param = None
        self.loss_scaler = None
        if self.cast_dtype == torch.float16:
            self.loss_scaler = self._build_scaler(loss_scale, use_fsdp)

    def _build_scaler(self, loss_scale, use_fsdp):
        if use_fsdp:
            from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler
            scaler_type = ShardedGradScaler
        else:
            scaler_type = torch.amp.GradScaler
        device = dict(device=self.device_type)
        if loss_scale == 'dynamic':
            return scaler_type(**device)
        if isinstance(loss_scale, float):
            self._scale_update_param = loss_scale
            return scaler_type(**device, init_scale=loss_scale)
        if isinstance(loss_scale, dict):
            return scaler_type(**device, **loss_scale)
        raise TypeError(f"optim_wrapper.loss_scale must be 'dynamic', a float or a dict, got {loss_scale!r}")

    def backward(self, loss, **kwargs):
        if self.loss_scaler is None:
            return OptimWrapper.backward(self, loss, **kwargs)
        return super().backward(loss, **kwargs)

    def step(self, **kwargs):
        if self.loss_scaler is None:
            return OptimWrapper.step(self, **kwargs)
        return super().step(**kwargs)

    def state_dict(self):
        if self.loss_scaler is None:
            return OptimWrapper.state_dict(self)
        return super().state_dict()

    def load_state_dict(self, state_dict):
        scaler_state = state_dict.pop('loss_scaler', None)
        if self.loss_scaler is not None and scaler_state is not None:
            self.loss_scaler.load_state_dict(scaler_state)
        OptimWrapper.load_state_dict(self, state_dict)

    @contextlib.contextmanager
    def optim_context(self, model):
        with OptimWrapper.optim_context(self, model), torch.autocast(self.device_type, dtype=self.cast_dtype):
            yield
