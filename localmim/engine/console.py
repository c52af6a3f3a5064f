"""A short start-up on the terminal; everything in the log file.

mmengine's Runner logs about 300 lines before the first iteration: the system and runtime
environment, the whole config, the hook order and, with parameter-wise optimiser settings, one
line per parameter. :class:`ConsoleSummaryFilter` keeps these out of the terminal (they stay in
``<work_dir>/<timestamp>/<timestamp>.log``), prints one summary line in place of the
environment, and keeps mmengine's own harmless log warnings (its CheckpointHook's
``FileClient`` deprecation notes) off the terminal. The dependencies' Python warnings are handled
by :mod:`localmim.harmless_warnings`. ``LOCALMIM_VERBOSE=1`` shows everything again.
"""
import logging
import os
import re

__all__ = ['ConsoleSummaryFilter', 'quiet_console']

# Start of the long start-up messages of mmengine's Runner and optimiser constructor.
_ENVIRONMENT = '\n' + '-' * 60 + '\nSystem environment:'
_LONG_MESSAGES = ('Config:\n', 'Hooks will be executed in the following order', 'paramwise_options',
                  'Distributed training is not used, all SyncBatchNorm',
                  # harmless warnings of mmengine itself (its CheckpointHook, metrics)
                  '"FileClient" will be deprecated in future', '"HardDiskBackend" is the alias of',
                  'The prefix is not set in metric class')
_SUMMARY_FIELDS = (('Python', 'Python'), ('PyTorch', 'torch'), ('CUDA available', 'CUDA'),
                   ('MMEngine', 'mmengine'), ('seed', 'seed'))


def _verbose():
    return os.environ.get('LOCALMIM_VERBOSE', '0') not in ('', '0')


class ConsoleSummaryFilter(logging.Filter):
    """Filter of a terminal handler: drops the long start-up records (not the file's copy) and
    shows one line summarising the environment instead.

    Args:
        handler (logging.Handler): the terminal handler it filters (the summary goes to it).
        log_file (str): where the full records are, named in the summary.
    """

    def __init__(self, handler, log_file):
        super().__init__()
        self.handler, self.log_file = handler, log_file

    def filter(self, record):
        message = str(record.msg)
        if message.startswith(_ENVIRONMENT):
            summary = logging.makeLogRecord(dict(record.__dict__, msg=self.summary(message), args=None))
            self.handler.handle(summary)
            return False
        return not message.startswith(_LONG_MESSAGES)

    def summary(self, environment):
        """'Python 3.11.7, torch 2.14.1, CUDA False, ...; environment, config and hooks: FILE'."""
        found = dict(re.findall(r'^\s+([^:\n]+): (.*)$', environment, flags=re.MULTILINE))
        parts = [f'{short} {found[key].split()[0]}' for key, short in _SUMMARY_FIELDS if key in found]
        return f"{', '.join(parts)}; environment, config and hook order: {self.log_file}"


def quiet_console(logger, log_file):
    """Attach :class:`ConsoleSummaryFilter` to the terminal handlers of ``logger`` (not with
    ``LOCALMIM_VERBOSE=1``)."""
    if _verbose():
        return
    for handler in logger.handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            if not any(isinstance(f, ConsoleSummaryFilter) for f in handler.filters):
                handler.addFilter(ConsoleSummaryFilter(handler, log_file))
