"""What a detector compares: a model's features at a named layer, its predictions, or raw inputs.

The default is the model's feature vector, found by the one rule of
:mod:`retentive.models.protocol`: the layer the model declares (``feature_layer``), else the
*input* of the last ``nn.Linear`` the forward pass calls (the classifier head of an MLP or a CNN;
a task-routed model runs with task id 0). A named layer (dotted names as
in ``model.named_modules()``, as for :class:`~retentive.models.taps.FeatureTaps`) gives that
layer's *output*. Features are flattened to ``(N, D)``; raw inputs likewise, the leaves of nested
inputs (dicts of tensors) concatenated in :func:`retentive.data.nested.flatten` order. Each
extractor is an ``nn.Module``, so it fits Renate's ``feature_extractor`` argument.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from retentive.data import nested
from retentive.data.streaming import StreamChunk, is_stream
from retentive.errors import DataError
from retentive.models.modes import evaluating
from retentive.models.protocol import takes_task_ids
from retentive.models.taps import FeatureTap


def flatten_inputs(x: Any) -> Tensor:
    """``(B, D)`` float: a tensor's or every nested leaf's values per sample, concatenated."""
    leaves = nested.flatten(x)
    return torch.cat([leaf.reshape(leaf.shape[0], -1).to(torch.float32) for leaf in leaves.values()], dim=1)


def _call(model: nn.Module, x: Any) -> Tensor:
    """The model's logits; a task-routed model gets task id 0 (its first head) for every sample."""
    if not takes_task_ids(model):
        return model(x)
    return model(
        x, torch.zeros(nested.batch_size(x), dtype=torch.long, device=next(iter(nested.flatten(x).values())).device)
    )


class RawInputs(nn.Module):
    """The inputs themselves, flattened (the detectors' default, as Renate's ``Identity``)."""

    def forward(self, x: Any) -> Tensor:
        return flatten_inputs(x)


class LayerFeatures(nn.Module):
    """``model``'s features at ``layer`` (its output), flattened; ``None``: the model's feature vector.

    The feature vector follows the one rule of :func:`retentive.models.protocol.feature_layer`: the
    layer the model declares, else the input of the last ``nn.Linear`` called. After a forward
    pass :attr:`layer` names ``layer``, or for the feature vector the head that reads it (the last
    ``nn.Linear`` called; the declared layer if no ``nn.Linear`` ran).
    """

    def __init__(self, model: nn.Module, layer: str | None = None) -> None:
        super().__init__()
        FeatureTap(model, layer).remove()  # refuses an unknown layer, or a model with no feature layer
        self.model = model
        self.requested = layer
        self.layer = layer

    def forward(self, x: Any) -> Tensor:
        with FeatureTap(self.model, self.requested) as tap:
            _call(self.model, x)
            value = tap.value()
            self.layer = self.requested if self.requested is not None else (tap.head or tap.layer)
        return value.reshape(value.shape[0], -1).float()


class Predictions(nn.Module):
    """The model's predicted class per sample (argmax of its logits)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Any) -> Tensor:
        return _call(self.model, x).argmax(dim=-1)


def _batches(dataset: Dataset, batch_size: int, num_workers: int) -> Iterator[tuple[Any, Tensor | None]]:
    if getattr(dataset, "supports_batch_indexing", False):  # TensorChunk: one slice per batch, no collation
        for start in range(0, len(dataset), batch_size):  # type: ignore[arg-type]
            items = dataset[torch.arange(start, min(start + batch_size, len(dataset)))]  # type: ignore[arg-type]
            yield items[0], items[1]
        return
    if is_stream(dataset) and num_workers > 0:  # each worker reads its share, not the whole stream
        dataset = StreamChunk(dataset, shuffle=False, role="shift detection")
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers):
        if torch.is_tensor(batch) or isinstance(batch, dict):
            yield batch, None
        else:
            yield batch[0], batch[1] if len(batch) > 1 and torch.is_tensor(batch[1]) else None


def extract(
    extractor: nn.Module,
    dataset: Dataset,
    batch_size: int = 32,
    num_workers: int = 0,
    device: str | torch.device = "cpu",
) -> tuple[Tensor, Tensor | None]:
    """``(features (N, D) on the CPU, labels (N,) or None)`` of ``dataset`` under ``extractor``.

    Inputs the extractor (the model) cannot run on are a :class:`DataError` naming their shape.
    """
    extractor = extractor.to(device)
    features, labels = [], []
    with evaluating(extractor):
        for x, y in _batches(dataset, batch_size, num_workers):
            try:
                out = extractor(nested.to(x, device))
            except (RuntimeError, TypeError, ValueError, IndexError, KeyError) as error:
                raise DataError(
                    f"inputs ({nested.describe(nested.flatten(x, 'inputs'), batched=True)}) do not fit the feature "
                    f"extractor {_describe(extractor)}: {error}"
                ) from error
            features.append(out.reshape(out.shape[0], -1) if out.dim() > 1 else out)
            labels.append(None if y is None else y.reshape(-1).long())
    if not features:
        return torch.empty(0, 0), None
    has_labels = all(y is not None for y in labels)
    return torch.cat(features).cpu(), torch.cat(labels).cpu() if has_labels else None  # type: ignore[arg-type]


def labels_of(dataset: Dataset, batch_size: int = 32, num_workers: int = 0) -> Tensor | None:
    """``(N,)`` int64 labels of ``dataset`` (``dataset[i][1]``), or ``None`` if it has none."""
    targets = getattr(dataset, "targets", None)
    if torch.is_tensor(targets) and getattr(dataset, "supports_batch_indexing", False):  # TensorChunk: no pass
        return targets.reshape(-1).long().cpu()
    labels = [y for _, y in _batches(dataset, batch_size, num_workers)]
    present = [y for y in labels if y is not None]
    if not labels or len(present) != len(labels):
        return None
    return torch.cat([y.reshape(-1).long() for y in present]).cpu()


def _describe(extractor: nn.Module) -> str:
    if isinstance(extractor, LayerFeatures):
        return f"({type(extractor.model).__name__} up to layer {extractor.layer!r})"
    inner = getattr(extractor, "model", None)
    return type(inner if isinstance(inner, nn.Module) else extractor).__name__
