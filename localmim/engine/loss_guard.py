"""A non-finite loss guard that every rank of a run agrees on.

:func:`guarded_update` is the update of one training step: the mean of each loss over ranks for
the log, and either backward + optimizer step, or, when any loss is NaN/inf on ANY rank, the same
decision on every rank: raise one error naming the iteration, the scales and the ranks, or skip the
update (no backward, so no gradient all-reduce is started and no rank waits for another).

It costs one all-reduce of ``len(losses) + world_size`` numbers and one host read per step.
"""
import logging

import torch
import torch.distributed as dist
from mmengine.dist import get_rank, get_world_size
from mmengine.logging import MessageHub, print_log

__all__ = ['guarded_update', 'reduce_losses']


def reduce_losses(losses):
    """Mean over ranks of each loss, and the ranks on which some loss is non-finite.

    Args:
        losses: {name: tensor} of this rank (each is averaged to a scalar first).

    Returns:
        ({name: scalar float32 tensor, mean over ranks}, [ranks with a non-finite loss]).
        Every rank gets the same answer. A loss non-finite on any rank is non-finite in the mean.
    """
    names = list(losses)
    values = torch.stack([losses[name].detach().float().mean() for name in names])
    world_size = get_world_size()
    flags = torch.zeros(world_size, device=values.device)
    flags[get_rank()] = (~torch.isfinite(values)).any().float()
    packed = torch.cat([values, flags])
    if world_size > 1:
        dist.all_reduce(packed)  # sum: [loss sums..., one flag per rank]
    means = packed[:len(names)] / world_size
    flags = read_on_host(packed[len(names):])  # the one host read of a step
    bad_ranks = [rank for rank, flag in enumerate(flags) if flag]
    return dict(zip(names, means)), bad_ranks


def read_on_host(tensor):
    """``tensor.tolist()``: the step's one intended device read. It is allowed under
    ``torch.cuda.set_sync_debug_mode('error')``, so that mode finds every other sync in a step."""
    if not tensor.is_cuda:
        return tensor.tolist()
    mode = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode(0)
    try:
        return tensor.tolist()
    finally:
        torch.cuda.set_sync_debug_mode(mode)


def guarded_update(model, losses, optim_wrapper, nonfinite='raise', what='loss'):
    """Backward and optimizer step for ``losses``, unless one is non-finite on some rank.

    Args:
        model: the (unwrapped) model; its ``parse_losses`` sums the losses.
        losses: {name: tensor} of this rank.
        optim_wrapper: mmengine optim wrapper.
        nonfinite: 'raise' -> ``FloatingPointError`` on every rank, naming the iteration, the
            non-finite losses and (distributed) the ranks; 'skip' -> a warning, no update, and the
            non-finite losses log as 0.
        what: how the error names the loss ("non-finite LocalMIM loss ...").

    Returns:
        log_vars: the losses averaged over ranks (what the logger shows).
    """
    means, bad_ranks = reduce_losses(losses)
    if not bad_ranks:
        loss, _ = model.parse_losses(losses)
        optim_wrapper.update_params(loss)
        return model.parse_losses(means)[1]

    bad = {name: value for name, value in means.items() if not torch.isfinite(value)}
    iteration = MessageHub.get_current_instance().get_info('iter', -1) + 1
    values = ', '.join(f'{name}={value.item()}' for name, value in bad.items())
    world_size = get_world_size()
    where = f' (on rank {", ".join(map(str, bad_ranks))} of {world_size})' if world_size > 1 else ''
    if nonfinite == 'raise':
        raise FloatingPointError(f'non-finite {what} at iteration {iteration}: {values}{where}')
    print_log(f'skipped the update of iteration {iteration}: non-finite {what} {values}{where} '
              "(model.nonfinite='skip')", logger='current', level=logging.WARNING)
    optim_wrapper.zero_grad()
    finite = {name: torch.where(torch.isfinite(value), value, 0.) for name, value in means.items()}
    return model.parse_losses(finite)[1]
