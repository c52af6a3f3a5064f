"""``localmim.CheckpointHook``: mmengine's, deleting an outdated checkpoint only after the new one
is written."""
from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook as MMEngineCheckpointHook

from ..registry import HOOKS

__all__ = ['CheckpointHook']


@HOOKS.register_module()
class CheckpointHook(MMEngineCheckpointHook):
    """mmengine's ``CheckpointHook`` whose ``max_keep_ckpts`` pruning follows the save.

    mmengine deletes the oldest kept checkpoint *before* writing the new one, so with
    ``max_keep_ckpts=1`` a crash or kill during the save, or a save refused for non-finite
    weights (``localmim.Runner``), leaves no checkpoint to resume from. Here the bookkeeping is
    the same (the saved message hub lists the kept steps, new one included), but the file leaves
    only once its successor is complete. ``localmim.Runner`` uses this hook wherever a config
    asks for mmengine's ``CheckpointHook``.
    """

    def _save_checkpoint_with_step(self, runner, step, meta):
        if self.max_keep_ckpts <= 0:
            return super()._save_checkpoint_with_step(runner, step, meta)
        outdated = None
        if not (self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):  # not a re-save
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                outdated = self.keep_ckpt_ids.popleft()
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))
        max_keep_ckpts, self.max_keep_ckpts = self.max_keep_ckpts, -1  # save without pruning
        try:
            super()._save_checkpoint_with_step(runner, step, meta)
        finally:
            self.max_keep_ckpts = max_keep_ckpts
        if outdated is not None and is_main_process():
            path = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(outdated))
            if self.file_backend.isfile(path):
                self.file_backend.remove(path)
            elif self.file_backend.isdir(path):  # DeepSpeed checkpoints are folders
                self.file_backend.rmtree(path)
