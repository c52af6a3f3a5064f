"""Registries of the ``localmim`` scope, children of mmengine's root registries.

Configs in any default scope (mmengine, mmdet, mmseg) can say ``type='localmim.<Name>'``:
mmengine imports ``localmim.registry`` on seeing the ``localmim.`` prefix, and each registry
lazily imports its ``locations`` on first look-up, so no ``custom_imports`` is needed.

Code inside localmim builds sub-modules with :func:`build_model` etc., which pin the
``localmim`` scope, so what it builds never depends on the caller's default scope.
"""
from mmengine.registry import DATA_SAMPLERS as MMENGINE_DATA_SAMPLERS
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import EVALUATOR as MMENGINE_EVALUATOR
from mmengine.registry import FUNCTIONS as MMENGINE_FUNCTIONS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import LOG_PROCESSORS as MMENGINE_LOG_PROCESSORS
from mmengine.registry import LOOPS as MMENGINE_LOOPS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODEL_WRAPPERS as MMENGINE_MODEL_WRAPPERS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import OPTIMIZERS as MMENGINE_OPTIMIZERS
from mmengine.registry import PARAM_SCHEDULERS as MMENGINE_PARAM_SCHEDULERS
from mmengine.registry import RUNNERS as MMENGINE_RUNNERS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import VISBACKENDS as MMENGINE_VISBACKENDS
from mmengine.registry import VISUALIZERS as MMENGINE_VISUALIZERS
from mmengine.registry import WEIGHT_INITIALIZERS as MMENGINE_WEIGHT_INITIALIZERS
from mmengine.registry import DefaultScope, Registry

SCOPE = 'localmim'


def _child(name, parent, locations):
    return Registry(name, parent=parent, scope=SCOPE, locations=locations)


MODELS = _child('model', MMENGINE_MODELS, ['localmim.models'])
MODEL_WRAPPERS = _child('model_wrapper', MMENGINE_MODEL_WRAPPERS, ['localmim.engine'])
WEIGHT_INITIALIZERS = _child('weight initializer', MMENGINE_WEIGHT_INITIALIZERS, ['localmim.models'])
DATASETS = _child('dataset', MMENGINE_DATASETS, ['localmim.datasets'])
DATA_SAMPLERS = _child('data sampler', MMENGINE_DATA_SAMPLERS, ['localmim.datasets'])
TRANSFORMS = _child('transform', MMENGINE_TRANSFORMS, ['localmim.datasets'])
FUNCTIONS = _child('function', MMENGINE_FUNCTIONS, ['localmim.datasets'])
# data loaders other than torch's DataLoader: ``train_dataloader = dict(type=...)`` (localmim.Runner)
DATA_LOADERS = Registry('data loader', scope=SCOPE, locations=['localmim.datasets'])
METRICS = _child('metric', MMENGINE_METRICS, ['localmim.evaluation'])
EVALUATOR = _child('evaluator', MMENGINE_EVALUATOR, ['localmim.evaluation'])
OPTIMIZERS = _child('optimizer', MMENGINE_OPTIMIZERS, ['localmim.engine'])
OPTIM_WRAPPERS = _child('optim_wrapper', MMENGINE_OPTIM_WRAPPERS, ['localmim.engine'])
OPTIM_WRAPPER_CONSTRUCTORS = _child('optimizer wrapper constructor', MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS,
                                    ['localmim.engine'])
PARAM_SCHEDULERS = _child('parameter scheduler', MMENGINE_PARAM_SCHEDULERS, ['localmim.engine'])
HOOKS = _child('hook', MMENGINE_HOOKS, ['localmim.engine'])
LOOPS = _child('loop', MMENGINE_LOOPS, ['localmim.engine'])
RUNNERS = _child('runner', MMENGINE_RUNNERS, ['localmim.engine'])
LOG_PROCESSORS = _child('log_processor', MMENGINE_LOG_PROCESSORS, ['localmim.engine'])
VISUALIZERS = _child('visualizer', MMENGINE_VISUALIZERS, ['localmim.visualization'])
VISBACKENDS = _child('vis_backend', MMENGINE_VISBACKENDS, ['localmim.visualization'])


def _scoped(cfg):
    """Copy of a config dict whose unscoped ``type`` is pinned to the localmim scope."""
    cfg = dict(cfg)
    if isinstance(cfg.get('type'), str) and '.' not in cfg['type']:
        cfg['type'] = f'{SCOPE}.{cfg["type"]}'
    return cfg


def build_model(cfg, **kwargs):
    """Build a localmim model from a dict, whatever the caller's default scope is."""
    if not isinstance(cfg, dict):
        return cfg  # already a module
    with DefaultScope.overwrite_default_scope(SCOPE):
        return MODELS.build(_scoped(cfg), default_args=kwargs or None)
