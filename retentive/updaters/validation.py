"""Checks on a chunk before anything is trained or written, so bad input fails fast and costs nothing.

Datasets that expose their tensors (``inputs``, ``targets``, ``task_ids``, as
:class:`~retentive.data.TensorChunk` does) are checked whole and vectorised; any other dataset is
checked on its first sample here and batch by batch during training (labels by the Learner,
non-finite values through the loss), where a failure also leaves nothing behind.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from retentive.errors import DataError


def _tensor_attr(dataset: Dataset, name: str, length: int) -> Tensor | None:
    value = getattr(dataset, name, None)
    if torch.is_tensor(value) and value.dim() >= 1 and value.shape[0] == length:
        return value
    return None


def probe_model(model: nn.Module, x: Tensor, task_id: int, role: str) -> int:
    """Run ``model`` on one sample (eval mode, no grad, nothing changed); return its number of outputs.

    A model with a true ``takes_task_ids`` attribute is called as ``model(x, task_ids)``, as the
    Learner calls it.
    """
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    batch = x.unsqueeze(0).to(device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            if getattr(model, "takes_task_ids", False):
                out = model(batch, torch.full((1,), task_id, dtype=torch.long, device=device))
            else:
                out = model(batch)
    except Exception as error:
        raise DataError(
            f"the model cannot run on a {role} input of shape {tuple(x.shape)} and dtype {x.dtype}: "
            f"{type(error).__name__}: {error}"
        ) from error
    finally:
        model.train(was_training)
    if not torch.is_tensor(out) or out.dim() != 2 or out.shape[0] != 1:
        shape = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
        raise DataError(f"the model must return logits of shape (batch, classes); on one {role} sample it returned {shape}")
    return int(out.shape[1])


def _check_label_tensor(y: Tensor, num_outputs: int, role: str) -> None:
    if y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
        raise DataError(f"{role} targets must be integer class indices, got dtype {y.dtype}")
    if y.dim() != 1:
        raise DataError(f"{role} targets must be one class index per sample, got shape {tuple(y.shape)}")
    bad = (y < 0) | (y >= num_outputs)
    if bool(bad.any()):
        index = int(bad.nonzero()[0, 0])
        raise DataError(
            f"{role} label {int(y[index])} (sample {index}) is outside the model's {num_outputs} outputs "
            f"(expected 0..{num_outputs - 1}); {int(bad.sum())} labels are out of range"
        )


def _check_finite(x: Tensor, role: str) -> None:
    if not (x.dtype.is_floating_point or x.dtype.is_complex):
        return
    finite = torch.isfinite(x.reshape(x.shape[0], -1)).all(dim=1)
    if not bool(finite.all()):
        index = int((~finite).nonzero()[0, 0])
        raise DataError(
            f"{role} inputs hold NaN or infinite values in {int((~finite).sum())} samples (first: sample "
            f"{index}); clean or drop them before the update"
        )


def _check_task_ids(t: Tensor, task_id: int | None, role: str) -> None:
    """Integer, non-negative, and (for a whole chunk, ``task_id`` given) consistent with ``task_id``."""
    if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
        raise DataError(f"{role} task ids must be integers, got dtype {t.dtype}")
    if bool((t < 0).any()):
        raise DataError(f"{role} task ids must be >= 0, got {int(t.min())}")
    values = torch.unique(t)
    if task_id is not None and values.numel() == 1 and int(values[0]) != task_id:
        raise DataError(
            f"task_id={task_id} was passed but every {role} sample carries task id {int(values[0])}; "
            "pass the same task id or none"
        )


def check_chunk(model: nn.Module, dataset: Dataset, role: str, task_id: int | None, default_task: int) -> None:
    """Refuse a chunk the model cannot train on: names the first bad value and what was expected.

    Called after the basic shape checks (:meth:`ModelUpdater._check_dataset`); ``task_id`` is the
    task passed to ``update`` (``None`` when not given), ``default_task`` the one used instead.
    """
    n = len(dataset)  # type: ignore[arg-type]
    sample: Any = dataset[0]
    x = sample[0]
    t0 = sample[2] if len(sample) == 3 else None
    route = default_task if t0 is None else int(torch.as_tensor(t0))
    num_outputs = probe_model(model, x, route, role)

    targets = _tensor_attr(dataset, "targets", n)
    _check_label_tensor(targets if targets is not None else torch.as_tensor(sample[1]).reshape(1), num_outputs, role)
    inputs = _tensor_attr(dataset, "inputs", n)
    _check_finite(inputs if inputs is not None else x.unsqueeze(0), role)
    task_ids = _tensor_attr(dataset, "task_ids", n)
    if task_ids is not None:
        _check_task_ids(task_ids, task_id if role == "training" else None, role)
    elif t0 is not None:  # one sample says nothing about the chunk's other task ids
        _check_task_ids(torch.as_tensor(t0).reshape(1), None, role)
