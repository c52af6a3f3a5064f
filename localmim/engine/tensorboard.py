"""TensorBoard logging: ``tools/train.py --tensorboard``.

:func:`enable_tensorboard` adds mmengine's ``TensorboardVisBackend`` to the config's visualizer,
so everything the ``LoggerHook`` logs (the total loss, LocalMIM's per-scale ``loss_{cell}px``
terms, ``lr``, times) goes to ``<work_dir>/<timestamp>/vis_data/`` as TensorBoard scalars at
the logging interval, and, for LocalMIM pretraining, adds :class:`ReconstructionHook`, which
draws the reconstruction picture of :mod:`localmim.visualization.reconstruction` (masked
input, target | prediction at every scale) for a fixed set of training images every
``interval`` iterations and at the end. View with ``tensorboard --logdir WORK_DIR``.
"""
import torch
from mmengine.dist import master_only
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from ..registry import HOOKS

__all__ = ['enable_tensorboard', 'ReconstructionHook']

TENSORBOARD_BACKEND = 'TensorboardVisBackend'


def enable_tensorboard(cfg, image_interval=1000):
    """Add the TensorBoard backend to ``cfg.visualizer`` and, for a LocalMIM model, a
    :class:`ReconstructionHook` every ``image_interval`` iterations (``cfg`` changed in place)."""
    visualizer = cfg.setdefault('visualizer', dict(type='Visualizer'))
    backends = list(visualizer.get('vis_backends') or [dict(type='LocalVisBackend')])
    if not any(TENSORBOARD_BACKEND in str(backend.get('type')) for backend in backends):
        backends.append(dict(type=TENSORBOARD_BACKEND))
    visualizer['vis_backends'] = backends
    if str(cfg.get('model', {}).get('type', '')).split('.')[-1] == 'LocalMIM':
        hooks = list(cfg.get('custom_hooks') or [])
        if not any('ReconstructionHook' in str(hook.get('type')) for hook in hooks):
            hooks.append(dict(type='localmim.ReconstructionHook', interval=image_interval))
        cfg.custom_hooks = hooks


@HOOKS.register_module()
class ReconstructionHook(Hook):
    """Every ``interval`` training iterations (and after the last), add the reconstruction
    picture of the first ``num_images`` images of the first training batch to the visualizer
    (image ``reconstruction``, step = iteration), with the same masks each time.

    Args:
        interval (int): iterations between pictures.
        num_images (int): rows of the picture.
        panel_px (int): approximate size of each panel.
        seed (int): seed of the masks (the global random state is left as it was).
    """
    priority = 'LOW'

    def __init__(self, interval=1000, num_images=2, panel_px=128, seed=0):
        self.interval, self.num_images, self.panel_px, self.seed = interval, num_images, panel_px, seed
        self._images = None  # uint8 [B, 3, H, W], taken from the first batch
        self._last_step = None

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if self._images is None and data_batch is not None:
            self._images = torch.stack([image.clone() for image in
                                        data_batch['inputs'][:self.num_images]]).cpu()
        if self.every_n_train_iters(runner, self.interval):
            self._draw(runner, step=runner.iter + 1)

    def after_train(self, runner):
        if self._last_step != runner.iter:
            self._draw(runner, step=runner.iter)

    @master_only
    def _draw(self, runner, step):
        from ..visualization.reconstruction import reconstruction_image, reconstruction_panels
        if self._images is None:
            return
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        was_training = model.training
        model.eval()
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                inputs = model.data_preprocessor(dict(inputs=list(self._images)), False)['inputs']
                panels = reconstruction_panels(model, inputs, self._images, self.panel_px)
        finally:
            model.train(was_training)
        names = [f'train image {i}' for i in range(len(panels))]
        image = reconstruction_image(panels, names, title=f'iteration {step}')
        runner.visualizer.add_image('reconstruction', image, step=step)
        self._last_step = step
