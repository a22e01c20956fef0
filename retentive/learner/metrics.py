"""Per-epoch metrics under Renate's logged names: ``train_loss``, ``train_base_loss``, ``val_loss``
and every ``logged_metrics`` entry as ``train_<name>`` / ``val_<name>``.

Renate's dashboards, its ``metric=`` argument (the checkpoint and early-stopping monitor) and Syne
Tune read these names, so retentive logs them beside its own (``loss/*``, ``val/accuracy``). The
losses accumulate as device tensors, so the step never waits on the host; they are read once per
epoch. ``logged_metrics`` are torchmetrics objects updated with ``(logits, targets)`` each step
(a metric's own argument checks may synchronise; pass none to keep the step free of them).
"""

from __future__ import annotations

from collections.abc import ItemsView, Mapping, ValuesView
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

#: the names Renate logs whatever ``logged_metrics`` holds, plus retentive's validation accuracy
LOSS_NAMES = ("train_loss", "train_base_loss", "val_loss")
RETENTIVE_NAMES = ("val/accuracy",)

if TYPE_CHECKING:
    from torchmetrics import Metric

    class MetricDict(nn.ModuleDict):
        """``nn.ModuleDict`` whose values the type checker knows to be torchmetrics metrics."""

        def items(self) -> ItemsView[str, Metric]: ...
        def values(self) -> ValuesView[Metric]: ...
else:
    MetricDict = nn.ModuleDict


def logged_metric_names(logged_metrics: Mapping[str, Any] | None) -> tuple[str, ...]:
    """Every name a ``metric=`` monitor may name, given the updater's ``logged_metrics``."""
    names = [f"{prefix}_{name}" for name in (logged_metrics or {}) for prefix in ("train", "val")]
    return LOSS_NAMES + RETENTIVE_NAMES + tuple(names)


def check_logged_metrics(logged_metrics: Mapping[str, Any] | None) -> dict[str, Any]:
    """Refuse anything but a mapping of names to torchmetrics metrics (Renate's type)."""
    if logged_metrics is None:
        return {}
    if not isinstance(logged_metrics, Mapping):
        raise TypeError(f"logged_metrics must map names to torchmetrics metrics, got {type(logged_metrics).__name__}")
    import torchmetrics

    for name, metric in logged_metrics.items():
        if not isinstance(name, str) or not name or "/" in name:
            raise ValueError(f"logged_metrics names must be non-empty strings without '/', got {name!r}")
        if not isinstance(metric, torchmetrics.Metric):
            raise TypeError(f"logged_metrics[{name!r}] must be a torchmetrics.Metric, got {type(metric).__name__}")
    return dict(logged_metrics)


class EpochMetrics(nn.Module):
    """The epoch's running losses and metrics for training and validation (a Learner submodule,
    so the metrics follow the Learner to its device)."""

    def __init__(self, logged_metrics: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        metrics = check_logged_metrics(logged_metrics)
        self.train_metrics = MetricDict({name: metric.clone() for name, metric in metrics.items()})
        self.val_metrics = MetricDict({name: metric.clone() for name, metric in metrics.items()})
        self._sums: dict[str, Tensor] = {}
        self._counts: dict[str, int] = {}

    def _add(self, name: str, value: Tensor, weight: int = 1) -> None:
        value = value.detach().float() * weight
        self._sums[name] = value if name not in self._sums else self._sums[name] + value
        self._counts[name] = self._counts.get(name, 0) + weight

    def train_step(self, total: Tensor, ctx: Any) -> None:
        """One training step: its total loss, its new-data loss, and the metrics on new samples."""
        self._add("train_loss", total)
        if "loss/new" in ctx.losses:
            self._add("train_base_loss", ctx.losses["loss/new"])
        for metric in self.train_metrics.values():
            metric.update(ctx.outputs.detach(), ctx.targets)

    def val_step(self, logits: Tensor, targets: Tensor, loss: Tensor) -> None:
        """One validation batch: ``loss`` is its mean loss, weighted by the batch size."""
        self._add("val_loss", loss, int(targets.shape[0]))
        for metric in self.val_metrics.values():
            metric.update(logits, targets)

    def _log(self, module: Any, prefix: str, metrics: MetricDict) -> None:
        world = getattr(getattr(module, "_trainer", None), "world_size", 1) > 1
        for name in [n for n in self._sums if n.startswith(prefix)]:
            module.log(name, self._sums.pop(name) / self._counts.pop(name), on_epoch=True, sync_dist=world)
        for name, metric in metrics.items():
            if metric.update_count:
                module.log(f"{prefix}_{name}", metric.compute(), on_epoch=True)
            metric.reset()

    def log_train(self, module: Any) -> None:
        """At an epoch's end: log the training names and start the next epoch afresh."""
        self._log(module, "train", self.train_metrics)

    def log_val(self, module: Any) -> None:
        """At a validation epoch's end: log the validation names."""
        self._log(module, "val", self.val_metrics)

    def reset(self) -> None:
        self._sums.clear()
        self._counts.clear()
        for metric in list(self.train_metrics.values()) + list(self.val_metrics.values()):
            metric.reset()


def best(values: Mapping[str, Any], name: str) -> float | None:
    """The logged value of ``name`` as a float, or ``None`` when it was not logged."""
    value = values.get(name)
    if value is None:
        return None
    return float(torch.as_tensor(value).detach().cpu())
