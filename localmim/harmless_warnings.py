"""Warnings of our dependencies that tell a user nothing about their run, silenced on import.

Each entry is matched by its message and category only (``warnings.filterwarnings``); every
other warning still shows. ``LOCALMIM_VERBOSE=1`` keeps all of them.
"""
import os
import warnings

__all__ = ['HARMLESS_WARNINGS', 'silence_harmless_warnings']

HARMLESS_WARNINGS = (
    # setuptools < 82, kept for mmcv's build and mmengine's config loader (see README)
    (r'pkg_resources is deprecated as an API', UserWarning),
    # mmseg 1.2.2 internals: its own deprecations and defaults, the same for every config
    (r'``build_loss`` would be deprecated soon', UserWarning),
    (r'`reduce_zero_label` will be deprecated', UserWarning),
    (r'Default ``avg_non_ignore`` is False', UserWarning),
    (r'The draw is False, it means that the hook for visualization will not take effect',
     UserWarning),
)


def silence_harmless_warnings():
    """Ignore :data:`HARMLESS_WARNINGS` (not with ``LOCALMIM_VERBOSE=1``)."""
    if os.environ.get('LOCALMIM_VERBOSE', '0') not in ('', '0'):
        return
    for message, category in HARMLESS_WARNINGS:
        warnings.filterwarnings('ignore', message=message, category=category)
