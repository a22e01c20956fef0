"""What a detector compares: a model's features at a named layer, its predictions, or raw inputs.

The default layer is the penultimate one, found by one rule: the *input* of the last ``nn.Linear``
the forward pass calls (the classifier head of an MLP or a CNN; for a task-incremental multi-head
model, run with task id 0, that head), captured with forward pre-hooks on every ``nn.Linear``. A named layer (dotted names as
in ``model.named_modules()``, as for :class:`~retentive.models.taps.FeatureTaps`) gives that
layer's *output*. Features are flattened to ``(N, D)``; raw inputs likewise, the leaves of nested
inputs (dicts of tensors) concatenated in :func:`retentive.data.nested.flatten` order. Each
extractor is an ``nn.Module``, so it fits Renate's ``feature_extractor`` argument.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from retentive.data import nested
from retentive.errors import DataError
from retentive.models.modes import evaluating


def linear_layers(model: nn.Module) -> dict[str, nn.Linear]:
    """``model``'s ``nn.Linear`` submodules by name; the default feature is the input of the last one called."""
    linear = {name: module for name, module in model.named_modules() if isinstance(module, nn.Linear)}
    if not linear:
        raise ValueError(
            f"{type(model).__name__} has no nn.Linear layer, so it has no default penultimate feature; "
            f"name a layer (one of {[name for name, _ in model.named_modules() if name][:10]}) or use raw inputs"
        )
    return linear


def flatten_inputs(x: Any) -> Tensor:
    """``(B, D)`` float: a tensor's or every nested leaf's values per sample, concatenated."""
    leaves = nested.flatten(x)
    return torch.cat([leaf.reshape(leaf.shape[0], -1).to(torch.float32) for leaf in leaves.values()], dim=1)


def _call(model: nn.Module, x: Any) -> Tensor:
    if getattr(model, "takes_task_ids", False):  # task-incremental models route by task id; head 0 here
        return model(x, torch.zeros(nested.batch_size(x), dtype=torch.long, device=next(iter(nested.flatten(x).values())).device))
    return model(x)


class RawInputs(nn.Module):
    """The inputs themselves, flattened (the detectors' default, as Renate's ``Identity``)."""

    def forward(self, x: Any) -> Tensor:
        return flatten_inputs(x)


class LayerFeatures(nn.Module):
    """``model``'s features at ``layer``, flattened; ``None``: the input of the last ``nn.Linear`` called.

    After a forward pass :attr:`layer` names the layer the features came from.
    """

    def __init__(self, model: nn.Module, layer: str | None = None) -> None:
        super().__init__()
        modules = dict(model.named_modules())
        self.model = model
        self.pre_hook = layer is None
        if layer is None:
            self._targets: dict[str, nn.Module] = dict(linear_layers(model))
        elif layer and layer in modules:
            self._targets = {layer: modules[layer]}
        else:
            raise ValueError(f"feature layer {layer!r} is not a submodule of {type(model).__name__}; it has "
                             f"{[name for name in modules if name][:20]}")
        self.layer = layer

    def forward(self, x: Any) -> Tensor:
        captured: list[tuple[str, Any]] = []

        def hook(name: str):  # noqa: ANN202 - a closure handed to torch
            if self.pre_hook:
                return lambda module, args: captured.append((name, args[0]))
            return lambda module, args, output: captured.append((name, output))

        register = "register_forward_pre_hook" if self.pre_hook else "register_forward_hook"
        handles = [getattr(module, register)(hook(name)) for name, module in self._targets.items()]
        try:
            _call(self.model, x)
        finally:
            for handle in handles:
                handle.remove()
        if not captured or not torch.is_tensor(captured[-1][1]):
            raise TypeError(f"feature layer {self.layer or 'nn.Linear'!r} did not run or gave no tensor in the forward pass")
        self.layer, value = captured[-1]
        return value.reshape(value.shape[0], -1).float()


class Predictions(nn.Module):
    """The model's predicted class per sample (argmax of its logits)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Any) -> Tensor:
        return _call(self.model, x).argmax(dim=-1)


def _batches(dataset: Dataset, batch_size: int, num_workers: int):  # noqa: ANN202 - a generator of (x, y | None)
    if getattr(dataset, "supports_batch_indexing", False):  # TensorChunk: one slice per batch, no collation
        for start in range(0, len(dataset), batch_size):  # type: ignore[arg-type]
            items = dataset[torch.arange(start, min(start + batch_size, len(dataset)))]  # type: ignore[arg-type]
            yield items[0], items[1]
        return
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers):
        if torch.is_tensor(batch) or isinstance(batch, dict):
            yield batch, None
        else:
            yield batch[0], batch[1] if len(batch) > 1 and torch.is_tensor(batch[1]) else None


def extract(
    extractor: nn.Module, dataset: Dataset, batch_size: int = 32, num_workers: int = 0, device: str | torch.device = "cpu"
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
    if not labels or any(y is None for y in labels):
        return None
    return torch.cat([y.reshape(-1).long() for y in labels]).cpu()  # type: ignore[union-attr]


def _describe(extractor: nn.Module) -> str:
    if isinstance(extractor, LayerFeatures):
        return f"({type(extractor.model).__name__} up to layer {extractor.layer!r})"
    inner = getattr(extractor, "model", None)
    return type(inner if isinstance(inner, nn.Module) else extractor).__name__
