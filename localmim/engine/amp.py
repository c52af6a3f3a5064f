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

mmcv's compiled nms and RoIAlign (Mask R-CNN's RPN, box and mask heads) take no bfloat16 (CPU and
CUDA) and want float32 on the CPU: building the wrapper makes them run in float32 with autocast off
whenever autocast is on (:func:`mmcv_ops_in_float32`); outside autocast they are untouched.
"""
import contextlib
import functools
import sys

import torch
from mmengine.device import get_device
from mmengine.optim import AmpOptimWrapper as MMEngineAmpOptimWrapper
from mmengine.optim import OptimWrapper

from ..registry import OPTIM_WRAPPERS

__all__ = ['AmpOptimWrapper', 'autocast_dtype', 'mmcv_ops_in_float32']

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


def in_float32_under_autocast(op):
    """``op`` (an mmcv op) that, under autocast on its tensors' device, runs with autocast off on
    float32 copies of its floating tensors; its floating outputs come back in the dtype of its first
    floating input (the feature map's: what the surrounding mmdet code writes them into)."""
    @functools.wraps(op)
    def run(*args, **kwargs):
        first = next((a for a in args if torch.is_tensor(a) and a.is_floating_point()), None)
        if first is None or not torch.is_autocast_enabled(first.device.type):
            return op(*args, **kwargs)
        args = [a.float() if torch.is_tensor(a) and a.is_floating_point() else a for a in args]
        with torch.autocast(first.device.type, enabled=False):
            out = op(*args, **kwargs)
        if torch.is_tensor(out) and out.is_floating_point():
            return out.to(first.dtype)
        return out
    run.in_float32_under_autocast = True
    return run


def mmcv_ops_in_float32():
    """Make mmcv's nms (``NMSop``, behind ``nms``/``batched_nms``) and RoIAlign (``roi_align``,
    behind ``RoIAlign``) run in float32 under autocast (:func:`in_float32_under_autocast`). Their
    kernels dispatch float32/float64 (and float16 on CUDA) only, and the CPU nms reads float32
    boxes: under bf16 autocast Mask R-CNN otherwise stops at its first RPN proposal step with
    "expected scalar type Float but found BFloat16". Idempotent; nothing without mmcv's ops."""
    try:
        import mmcv.ops  # the full mmcv, with compiled ops
    except ImportError:
        return
    nms_module, roi_align_module = sys.modules['mmcv.ops.nms'], sys.modules['mmcv.ops.roi_align']
    if getattr(roi_align_module.roi_align, 'in_float32_under_autocast', False):
        return
    nms_module.NMSop.apply = in_float32_under_autocast(nms_module.NMSop.apply)  # what nms() calls
    # the function RoIAlign.forward calls, and the same function as mmcv.ops exports it
    roi_align_module.roi_align = mmcv.ops.roi_align = in_float32_under_autocast(roi_align_module.roi_align)


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
        mmcv_ops_in_float32()  # Mask R-CNN's nms and RoIAlign take no bf16
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
