"""Step checks that never wait on the host: they accumulate as tensors and are read when due.

Reading a tensor's value in Python (``bool(t)``, ``.item()``) makes the host wait for the device
to finish the step. The Learner's per-step checks (a non-finite total loss, labels outside the
model's outputs) therefore fold each step's verdict into a few tensors with tensor operations
only (replayed labels are clamped meanwhile, :meth:`StepChecks.replayed_labels`);
:meth:`StepChecks.raise_if_failed` reads them at logging steps and at the end of each epoch. A
failure still stops the update with the step where it happened and nothing is written (the
updater puts the model and memory back); the steps run in between are discarded with it.

:func:`check_settings` refuses a Learner's bad settings when it is built, before any step.
"""

from __future__ import annotations

import torch
from torch import Tensor

from retentive.errors import DataError, NonFiniteLossError

SCHEDULER_INTERVALS = ("epoch", "step")
CLIP_ALGORITHMS = (None, "norm", "value")


def check_settings(
    scheduler_interval: str, clip_algorithm: str | None, clip_val: float | None, ema_gamma: float
) -> None:
    """Refuse a scheduler interval, clipping or metadata EMA the Learner cannot run."""
    if scheduler_interval not in SCHEDULER_INTERVALS:
        raise ValueError(
            f"learning_rate_scheduler_interval must be one of {SCHEDULER_INTERVALS}, got {scheduler_interval!r}"
        )
    if clip_algorithm not in CLIP_ALGORITHMS:
        raise ValueError(f"gradient_clip_algorithm must be one of {CLIP_ALGORITHMS}, got {clip_algorithm!r}")
    if clip_val is not None and (isinstance(clip_val, bool) or not float(clip_val) >= 0):
        raise ValueError(f"gradient_clip_val must be a number >= 0 or None, got {clip_val!r}")
    if not 0.0 <= ema_gamma <= 1.0:
        raise ValueError(f"ema_memory_update_gamma must lie in [0, 1], got {ema_gamma}")


class StepChecks:
    """Accumulated verdicts of the steps since the last read (all tensors on the device)."""

    def __init__(self) -> None:
        self._device: torch.device | None = None

    def reset(self, device: torch.device, first_step: int) -> None:
        self._device = device
        self._first_step = first_step
        self._finite = torch.ones((), dtype=torch.bool, device=device)  # every total so far finite
        self._finite_steps = torch.zeros((), dtype=torch.int64, device=device)  # steps before the first bad one
        self._bad_loss = torch.zeros((), dtype=torch.float32, device=device)
        self._labels_ok = torch.ones((), dtype=torch.bool, device=device)
        self._labels_ok_steps = torch.zeros((), dtype=torch.int64, device=device)
        self._bad_label = torch.zeros((), dtype=torch.int64, device=device)
        self._outputs = 0

    def _ensure(self, device: torch.device) -> None:
        if self._device is None:  # a step run outside a fit (tests, tools): start counting now
            self.reset(device, 0)

    def loss(self, total: Tensor) -> None:
        """Fold in one step's total loss."""
        self._ensure(total.device)
        ok = torch.isfinite(total.detach())
        first_bad = self._finite & ~ok
        self._bad_loss = torch.where(first_bad, total.detach().float(), self._bad_loss)
        self._finite = self._finite & ok
        self._finite_steps = self._finite_steps + self._finite.long()

    def labels(self, targets: Tensor, num_outputs: int) -> Tensor:
        """Fold in one step's labels; return them clamped into range so the loss can run."""
        self._ensure(targets.device)
        bad = (targets < 0) | (targets >= num_outputs)
        any_bad = bad.any()
        first_bad = self._labels_ok & any_bad
        self._bad_label = torch.where(first_bad, targets[bad.to(torch.uint8).argmax()], self._bad_label)
        self._labels_ok = self._labels_ok & ~any_bad
        self._labels_ok_steps = self._labels_ok_steps + self._labels_ok.long()
        self._outputs = num_outputs
        return targets.clamp(0, num_outputs - 1)

    def replayed_labels(self, targets: Tensor, num_outputs: int) -> Tensor:
        """Replayed labels clamped into range so the loss can run until the verdict is read.

        A replayed label out of range was stored by an earlier step of this update (a restored
        memory's labels are checked when the updater is built), whose :meth:`labels` recorded it.
        """
        return targets.clamp(0, num_outputs - 1)

    def raise_if_failed(self, task_id: object) -> None:
        """Read the verdicts (one host sync); raise for the first failure seen."""
        if self._device is None:
            return
        finite, labels_ok = bool(self._finite), bool(self._labels_ok)
        if not labels_ok:
            n = self._outputs
            raise DataError(
                f"label {int(self._bad_label)} is outside the model's {n} outputs (expected 0..{n - 1}), "
                f"at step {self._first_step + int(self._labels_ok_steps)} (task {task_id})"
            )
        if not finite:
            raise NonFiniteLossError(
                f"the training loss became {float(self._bad_loss)} at step "
                f"{self._first_step + int(self._finite_steps)} (task {task_id}); the update was stopped and "
                "nothing was written"
            )
