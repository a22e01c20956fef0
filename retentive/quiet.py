"""Lightning's chatter, silenced in one place for the library, the command line and the benchmarks.

Every ``Trainer`` logs which accelerators exist ("GPU available: False, used: False", TPU, HPU),
a "💡 Tip" advertising litlogger, and warnings that do not apply to how retentive drives it (few
data-loader workers on small chunks, no validation loader when an update has no validation data,
a chunk shorter than the logging interval, torch deprecations raised from Lightning's own code and
from ``torch.distributed`` under DDP). :func:`quiet_lightning` drops exactly these for the length
of a ``with`` block and puts the logging levels and warning filters back afterwards; every other
warning and every error still reaches the user. Importing this module imports neither torch nor
Lightning.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

#: Loggers whose INFO lines are the per-Trainer banner and tips; raised to WARNING. The
#: ``rank_zero`` children carry the lines and matter most: importing Lightning resets its top-level
#: logger to INFO, but leaves its children's levels alone, so the block holds even when Lightning is
#: first imported inside it.
NOISY_LOGGERS = (
    "pytorch_lightning",
    "pytorch_lightning.utilities.rank_zero",
    "lightning.pytorch",
    "lightning.pytorch.utilities.rank_zero",
    "lightning_fabric",
    "lightning_fabric.utilities.rank_zero",
    "lightning",
    "lightning_fabric.utilities.distributed",  # "Initializing distributed: GLOBAL_RANK: ..." on every rank
    "lightning.fabric.utilities.distributed",
)
#: Warnings known not to apply to retentive's use of Lightning (regular expressions on the message).
IRRELEVANT_WARNINGS = (
    r".*does not have many workers.*",  # chunks are small tensors in memory: workers cost more than they give
    r".*smaller than the logging interval.*",  # a short chunk; the updater logs at its end regardless
    r".*LeafSpec.*",  # Lightning's pytree helper tripping a torch deprecation
    r".*`validation_step` but have no `val_dataloader`.*",  # validation data is optional per update
    r".*no `val_dataloader`.*",
    r".*GPU available but not used.*",  # the config chose the accelerator
    r"`torch\.distributed\.[^`]*` (is deprecated|will be deprecated|is a private function).*",  # under DDP
    r"You are using a Backend .* as a ProcessGroup.*",
    r"Your `IterableDataset` has `__len__` defined.*",  # a stream's reader shares its length per worker exactly
)


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Silence Lightning's banner lines, tips and the warnings in :data:`IRRELEVANT_WARNINGS`.

    Nestable and exception-safe: the loggers' levels and the warning filters are restored on exit.
    """
    levels = {name: logging.getLogger(name).level for name in NOISY_LOGGERS}
    try:
        for name in NOISY_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
        with warnings.catch_warnings():
            for message in IRRELEVANT_WARNINGS:
                warnings.filterwarnings("ignore", message=message)
            yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


#: Modules whose warnings a hyperparameter search drops: BoTorch's Gaussian process warns about
#: tiny observation noise when it has only a few trials to fit, which is every search here.
SEARCH_WARNING_MODULES = r"(gpytorch|botorch|linear_operator)(\.|$)"


@contextlib.contextmanager
def quiet_search() -> Iterator[None]:
    """Silence Syne Tune's INFO logging and the warnings of :data:`SEARCH_WARNING_MODULES` for one
    search (``retentive tune``, ``run_training_job``); restored on exit like :func:`quiet_lightning`."""
    log = logging.getLogger("syne_tune")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=SEARCH_WARNING_MODULES)
            yield
    finally:
        log.setLevel(level)
