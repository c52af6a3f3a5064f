"""``localmim.CompleteCheckpointHook``: refuse a checkpoint that leaves part of the model untouched.

mmengine loads checkpoints non-strictly: a segmentation checkpoint loaded into a detector fills
the backbone, leaves the heads random, only logs the mismatch, and ``tools/test.py`` then reports
a metric that looks real. ``tools/test.py`` adds this hook (unless ``--allow-partial``), so
missing or shape-mismatched keys fail with one error listing them. It works with any runner
type, mmengine's included: the check runs in ``after_load_checkpoint``, before the weights go
into the model.
"""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from ..checkpoint import CheckpointError, check_keys_match, revise_keys_of
from ..registry import HOOKS

__all__ = ['CompleteCheckpointHook', 'incomplete_keys']


def incomplete_keys(model_state, checkpoint_state):
    """Model keys the checkpoint lacks, and ``(key, checkpoint shape, model shape)`` of the keys
    whose tensors differ in shape."""
    missing = [key for key in model_state if key not in checkpoint_state]
    mismatched = [(key, tuple(checkpoint_state[key].shape), tuple(value.shape))
                  for key, value in model_state.items()
                  if key in checkpoint_state and hasattr(checkpoint_state[key], 'shape')
                  and tuple(checkpoint_state[key].shape) != tuple(value.shape)]
    return missing, mismatched


@HOOKS.register_module()
class CompleteCheckpointHook(Hook):
    """Raise ``CheckpointError`` when the loaded checkpoint misses or mis-shapes model keys.

    Args:
        source (str): the checkpoint file, for the message.
        limit (int): how many keys of each kind the message lists.
    """
    priority = 'VERY_LOW'  # after hooks that rename keys

    def __init__(self, source='checkpoint', limit=40):
        self.source, self.limit = source, limit

    def after_load_checkpoint(self, runner, checkpoint):
        state_dict = checkpoint.get('state_dict', checkpoint)
        state_dict = dict(zip(revise_keys_of(state_dict), state_dict.values()))
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        model_state = model.state_dict()
        check_keys_match(model_state, state_dict, self.source)  # none at all: the clearer error
        missing, mismatched = incomplete_keys(model_state, state_dict)
        if not missing and not mismatched:
            return
        parts = []
        if missing:
            parts.append(f'{len(missing)} of the model\'s {len(model_state)} keys are not in it: '
                         f'{self._listed(missing)}')
        if mismatched:
            shapes = [f'{key} {tuple(theirs)} vs model {tuple(ours)}' for key, theirs, ours in mismatched]
            parts.append(f'{len(mismatched)} have another shape: {self._listed(shapes)}')
        raise CheckpointError(f'checkpoint {self.source} does not cover the model: '
                              + '; '.join(parts) + '. The uncovered weights would stay random '
                              'and the metrics would be meaningless; pass --allow-partial to '
                              'evaluate anyway.')

    def _listed(self, items):
        shown = ', '.join(items[:self.limit])
        return shown + (f', ... ({len(items) - self.limit} more)' if len(items) > self.limit else '')
