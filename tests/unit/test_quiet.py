"""retentive.quiet: Lightning's chatter is silenced in one place, and only inside the block."""

from __future__ import annotations

import logging
import warnings

from retentive.quiet import quiet_lightning

DDP_NOTICE = "`torch.distributed.all_gather_into_tensor` is deprecated. Please use `torch.distributed.all_gather_single` instead."


def test_known_irrelevant_warnings_are_dropped_inside_and_kept_outside():
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with quiet_lightning():
            warnings.warn(DDP_NOTICE, FutureWarning, stacklevel=1)  # once per rank under DDP (finding 8 of issue 16)
            warnings.warn(
                "The number of training batches (3) is smaller than the logging interval", UserWarning, stacklevel=1
            )
            warnings.warn("a warning that matters", UserWarning, stacklevel=1)
        warnings.warn(DDP_NOTICE, FutureWarning, stacklevel=1)
    assert [str(w.message) for w in seen] == ["a warning that matters", DDP_NOTICE]


def test_banner_loggers_are_raised_to_warning_and_put_back(caplog):
    rank_zero = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    distributed = logging.getLogger("lightning_fabric.utilities.distributed")
    rank_zero.setLevel(logging.INFO)
    before = distributed.level
    with caplog.at_level(logging.INFO):
        with quiet_lightning():
            rank_zero.info("GPU available: False, used: False")
            distributed.info("Initializing distributed: GLOBAL_RANK: 0, MEMBER: 1/2")
            rank_zero.warning("a Lightning warning still shows")
        rank_zero.info("outside the block")
    assert [r.getMessage() for r in caplog.records] == ["a Lightning warning still shows", "outside the block"]
    assert rank_zero.level == logging.INFO and distributed.level == before
