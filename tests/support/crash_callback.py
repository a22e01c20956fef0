"""A Lightning callback for tests: crashes an update at the start of epoch ``$RETENTIVE_TEST_CRASH_AT``.

Named by ``class_path`` in a config's ``trainer.callbacks``; the variable (unset: no crash) keeps
the config, and so the resume fingerprint, the same between the crashing run and its rerun.
"""

from __future__ import annotations

import os

import pytorch_lightning as pl


class CrashAtEpoch(pl.Callback):
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        at = os.environ.get("RETENTIVE_TEST_CRASH_AT")
        if at is not None and trainer.current_epoch == int(at):
            raise RuntimeError(f"simulated crash at the start of epoch {at}")
