"""Resuming an interrupted update from its last completed epoch.

With ``resume=True`` an update keeps checkpoints in ``.retentive-resume-<output name>/`` beside its
output folder: after every completed epoch but the last, ``epoch-NNNN/``, and once training is
over, a final one. Each is a state folder in the safe format (written atomically, verified,
``torch.load(weights_only=True)``), marked ``kind: "checkpoint"`` so that it is never loaded as a
state, whose ``learner.pt`` also holds what the rest of the update needs: the optimizer and
scheduler states, the random generators (torch, CUDA, Python, NumPy) and the data order's
generator. Its manifest records which update it belongs to (updater, hyperparameters, input
state, task, seed, a fingerprint of the data): a later update with ``resume=True`` and the same
arguments continues from the newest checkpoint that verifies, and refuses one written for other
arguments. On one device the resumed update writes the same state, bit for bit, as an
uninterrupted one. The checkpoints are removed once the output is in place.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import random
import re
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from retentive.errors import StateError
from retentive.state.fingerprint import dataset_fingerprint, differences, update_fingerprint  # noqa: F401 - re-exported
from retentive.state.format import KIND_CHECKPOINT, State, load_state, save_state
from retentive.state.interrupts import CommitGuard
from retentive.state.locking import OutputLock, refuse_symlink

RESUME_PREFIX = ".retentive-resume-"
#: Says which checkpoint an update resumes from (INFO); the command line prints it.
log = logging.getLogger(__name__)
_TRAINING_KEYS = ("optimizers", "schedulers", "rng", "loader_generator")
_EPOCH = re.compile(r"epoch-(\d{4,})$")


class ResumeWarning(UserWarning):
    """A resume checkpoint was unusable (e.g. failed verification) and was skipped."""


def checkpoint_root(output: str | os.PathLike[str]) -> Path:
    """The folder beside ``output`` that holds its resume checkpoints."""
    output = Path(output)
    return output.parent / f"{RESUME_PREFIX}{output.name}"


def _checkpoint_folders(output: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    root = checkpoint_root(output)
    if root.is_symlink():  # never followed: write_checkpoint refuses it with a message
        return []
    try:
        entries = list(root.iterdir())
    except OSError:
        return []
    found = [(int(m.group(1)), p) for p in entries if (m := _EPOCH.match(p.name)) and p.is_dir()]
    return sorted(found, reverse=True)


def has_checkpoint(output: str | os.PathLike[str]) -> bool:
    """Whether an interrupted update left a checkpoint for ``output`` (verified only on resume)."""
    return bool(_checkpoint_folders(output))


def leftover_epochs(output: str | os.PathLike[str]) -> int | None:
    """The epochs completed by the newest checkpoint an interrupted update left for ``output``, or
    ``None`` when there is none (not verified here: :func:`latest_checkpoint` does that on resume).

    The command line reads it to refuse starting over silently and to say where a resume begins.
    """
    found = _checkpoint_folders(output)
    return found[0][0] if found else None


def discard_checkpoints(output: str | os.PathLike[str]) -> None:
    """Remove every checkpoint kept for ``output`` (after its update finished, or to start over)."""
    shutil.rmtree(checkpoint_root(output), ignore_errors=True)


# ---------------------------------------------------------------- random generators
def capture_rng() -> dict[str, Any]:
    """Every global generator training may draw from, as tensors and plain values."""
    keys, position, has_gauss, cached = cast("tuple[Any, ...]", np.random.get_state())[1:]  # the legacy tuple
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": [version, list(internal), gauss_next],
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    numpy = state["numpy"]
    np.random.set_state(
        ("MT19937", numpy["keys"].numpy().astype(np.uint32), numpy["pos"], numpy["has_gauss"], numpy["cached_gaussian"])
    )
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------- writing and finding checkpoints
def _safe_roundtrip(value: Any, what: str) -> None:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    buffer.seek(0)
    try:
        torch.load(buffer, weights_only=True)
    except Exception as error:
        raise StateError(
            f"resume=True cannot store the {what} safely (it holds more than tensors and plain values: {error}); "
            "use resume=False or a scheduler whose state_dict is plain"
        ) from error


def capture_training(trainer: pl.Trainer, loader: DataLoader) -> dict[str, Any]:
    """What the Trainer holds that the state does not: optimizers, schedulers, generators."""
    schedulers = [config.scheduler.state_dict() for config in trainer.lr_scheduler_configs]
    _safe_roundtrip(schedulers, "learning-rate scheduler state")
    generator = loader.generator
    return {
        "optimizers": [optimizer.state_dict() for optimizer in trainer.optimizers],
        "schedulers": schedulers,
        "rng": capture_rng(),
        "loader_generator": None if generator is None else generator.get_state(),
    }


def restore_training(trainer: pl.Trainer, training: dict[str, Any], source: Path) -> None:
    """Put the optimizers, schedulers and global generators back as the checkpoint recorded them."""
    optimizers, schedulers = training["optimizers"], training["schedulers"]
    if len(optimizers) != len(trainer.optimizers) or len(schedulers) != len(trainer.lr_scheduler_configs):
        raise StateError(
            f"the checkpoint {str(source)!r} holds {len(optimizers)} optimizers and {len(schedulers)} schedulers, "
            f"but this update built {len(trainer.optimizers)} and {len(trainer.lr_scheduler_configs)}"
        )
    try:
        for optimizer, optimizer_state in zip(trainer.optimizers, optimizers):
            optimizer.load_state_dict(optimizer_state)
        for config, scheduler_state in zip(trainer.lr_scheduler_configs, schedulers):
            config.scheduler.load_state_dict(scheduler_state)
        restore_rng(training["rng"])
    except Exception as error:
        raise StateError(f"the checkpoint {str(source)!r} does not fit this update: {error}") from error


@dataclass
class Checkpoint:
    """A verified checkpoint of this update: the state after ``epochs_done`` epochs."""

    folder: Path
    epochs_done: int
    complete: bool
    state: State
    training: dict[str, Any]


def write_checkpoint(
    output: Path,
    lock: OutputLock,
    state: State,
    training: dict[str, Any],
    fingerprint: dict[str, Any],
    epochs_done: int,
    complete: bool,
) -> Path:
    """Save a checkpoint atomically (under the output's lock), then drop the older ones."""
    root = checkpoint_root(output)
    folder = root / f"epoch-{epochs_done:04d}"
    payload = State(
        model=state.model,
        learner={**state.learner, "resume": training},
        memory=state.memory,
        manifest={
            **state.manifest,
            "kind": KIND_CHECKPOINT,
            "resume": {"of": output.name, "fingerprint": fingerprint, "epochs_done": epochs_done, "complete": complete},
        },
    )
    refuse_symlink(root, "the resume folder")
    created = not root.exists()
    try:
        root.mkdir(exist_ok=True)
    except OSError as error:
        raise StateError(f"cannot create the resume folder {str(root)!r}: {error}") from error
    if folder.exists():  # left by a run killed after writing it but before moving on
        shutil.rmtree(folder)
    guard = CommitGuard()  # a checkpoint is not the update's commit: an interrupt during it is "not committed"
    try:
        save_state(folder, payload, lock=lock, guard=guard)
    except BaseException:
        if created:  # a first checkpoint that failed (a full disk) leaves no empty resume folder behind
            with contextlib.suppress(OSError):
                root.rmdir()
        raise
    finally:
        guard.deliver(
            False,
            f"interrupted while the resume checkpoint after epoch {epochs_done} was written; the "
            "update was not committed",
        )
    for entry in root.iterdir():  # older checkpoints and staging debris
        if entry == folder:
            continue
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
    return folder


def latest_checkpoint(output: Path, fingerprint: dict[str, Any]) -> Checkpoint | None:
    """The newest checkpoint of ``output`` that verifies, or ``None`` (start from the beginning).

    A checkpoint that fails verification is skipped with a :class:`ResumeWarning` (the update then
    redoes that work); one written by a different update is refused with :class:`StateError`, since
    continuing it would mix two updates.
    """
    candidates = _checkpoint_folders(output)
    for epochs_done, folder in candidates:
        try:
            state = load_state(folder, allow_checkpoint=True)
            record = state.manifest.get("resume")
            training = state.learner.get("resume")
            if not isinstance(record, dict) or not isinstance(training, dict):
                raise StateError(f"{str(folder)!r} records no resume information")
            missing = [] if record.get("complete") else sorted(set(_TRAINING_KEYS) - set(training))
            if missing:
                raise StateError(f"{str(folder)!r} lacks the training state {missing}")
        except StateError as error:
            warnings.warn(f"skipping the resume checkpoint {str(folder)!r}: {error}", ResumeWarning, stacklevel=3)
            continue
        if record.get("fingerprint") != fingerprint:
            raise StateError(
                f"cannot resume from {str(folder)!r}: it was written by a different update "
                f"({differences(record.get('fingerprint'), fingerprint)}); pass the same arguments and data, "
                f"or discard the checkpoint to start over (remove {str(checkpoint_root(output))!r}; --fresh on the "
                "command line)"
            )
        log.info("resuming from the checkpoint after epoch %d (%s)", epochs_done, folder)
        return Checkpoint(folder, epochs_done, bool(record.get("complete")), state, training)
    if candidates:
        warnings.warn(
            f"no usable resume checkpoint for {str(output)!r}; the update starts from the beginning",
            ResumeWarning,
            stacklevel=3,
        )
    return None


class EpochCheckpointer(pl.Callback):
    """Writes a checkpoint at the start of every epoch after the first (the previous one is then
    complete: validated, scheduler stepped) and, when resuming, restores the Trainer's side of the
    checkpoint once the components' ``on_update_start`` hooks have run. ``save`` is ``None`` in a
    process that does not write (a DDP rank other than zero)."""

    def __init__(
        self,
        save: Callable[[pl.Trainer, int], None] | None,
        epochs_before: int,
        restore: Callable[[pl.Trainer], None] | None = None,
    ) -> None:
        self.save = save
        self.epochs_before = epochs_before
        self.restore = restore

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.restore is not None:
            self.restore(trainer)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch > 0 and self.save is not None and trainer.is_global_zero:
            self.save(trainer, self.epochs_before + trainer.current_epoch)


class ResumeSession:
    """The resume plumbing of one update, so that the updater's life cycle stays readable.

    It finds the checkpoint an interrupted run of this same update left (``checkpoint``, matched
    by ``fingerprint``), builds the callback that writes a checkpoint after every epoch (only in
    the process that holds ``lock``) and restores the Trainer's side on resume, puts the loader's
    generator back, and writes the final (complete) checkpoint after the fit.

    Args:
        output: the update's output state folder (checkpoints live beside it).
        fingerprint: what identifies the update (:func:`update_fingerprint`).
        lock: the output lock when this process writes, else ``None`` (DDP ranks other than 0).
        capture: returns the updater's state now (weights, learner, memory).
        apply: puts a checkpoint's state into the updater (raises StateError if it does not fit).
        max_epochs: the update's epochs.
    """

    def __init__(
        self,
        output: Path,
        fingerprint: dict[str, Any],
        lock: OutputLock | None,
        capture: Callable[[], State],
        apply: Callable[[State, Path], None],
        max_epochs: int,
    ) -> None:
        self.output, self.fingerprint, self.lock = output, fingerprint, lock
        self.capture, self.apply, self.max_epochs = capture, apply, max_epochs
        self.checkpoint = latest_checkpoint(output, fingerprint)
        self._loader: DataLoader | None = None

    @property
    def epochs_before(self) -> int:
        """Epochs the checkpoint already holds (0 without one)."""
        return 0 if self.checkpoint is None else self.checkpoint.epochs_done

    @property
    def trained(self) -> bool:
        """The checkpoint holds the whole trained update: only its save was lost."""
        return self.checkpoint is not None and self.checkpoint.complete

    def callback(self) -> EpochCheckpointer:
        restore = None if self.checkpoint is None else self._restore
        return EpochCheckpointer(None if self.lock is None else self._write, self.epochs_before, restore)

    def _restore(self, trainer: pl.Trainer) -> None:
        assert self.checkpoint is not None
        self.apply(self.checkpoint.state, self.checkpoint.folder)
        restore_training(trainer, self.checkpoint.training, self.checkpoint.folder)

    def _write(self, trainer: pl.Trainer | None, epochs_done: int) -> None:
        """After ``epochs_done`` epochs; ``trainer=None`` marks the final one (training over)."""
        assert self.lock is not None and self._loader is not None
        training = {} if trainer is None else capture_training(trainer, self._loader)
        write_checkpoint(
            self.output, self.lock, self.capture(), training, self.fingerprint, epochs_done, complete=trainer is None
        )

    def attach_loader(self, loader: DataLoader) -> None:
        """The update's training loader: its generator is saved with, and restored from, checkpoints."""
        self._loader = loader
        if self.checkpoint is None:
            return
        try:
            loader.generator.set_state(self.checkpoint.training["loader_generator"])
        except (RuntimeError, TypeError) as error:
            raise StateError(
                f"the checkpoint {str(self.checkpoint.folder)!r} does not fit this update: {error}"
            ) from error

    def finish(self) -> None:
        """After a successful fit: the complete checkpoint (a crash before the save keeps the training)."""
        if self.lock is not None:
            self._write(None, self.max_epochs)
