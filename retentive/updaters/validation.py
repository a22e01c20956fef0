"""Checks on a chunk before anything is trained or written, so bad input fails fast and costs nothing.

Datasets that expose their tensors (``inputs``, ``targets``, ``task_ids``, as
:class:`~retentive.data.TensorChunk` does, or ``tensors`` as torch's ``TensorDataset`` does) are
checked whole and vectorised; any other dataset is checked on its first sample here and batch by
batch during training (labels by the Learner, non-finite values through the loss), where a failure
also leaves nothing behind. :func:`check_memory_labels` checks a restored memory's labels the same
way when an updater is built on a state folder.

A sample's ``x`` may be a tensor or a dict/tuple/list of tensors (tokenised text): the model is
probed with the nested sample, finiteness is checked per floating leaf, and :func:`check_dataset`
compares each leaf's per-sample shape and dtype with what the memory stores (a fixed padded
length per leaf, see :mod:`retentive.memory.layout`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset, TensorDataset

from retentive.data import nested
from retentive.data.streaming import declared_length, first_sample, is_stream
from retentive.errors import DataError, MemoryShapeError, StateError
from retentive.learner.transforms import apply_transform
from retentive.memory.layout import INPUTS, is_input_key, leaves_mismatch, spec_mismatch
from retentive.memory.protocol import ReplayMemory
from retentive.models.modes import evaluating
from retentive.models.protocol import forward_routed

#: where a ``TensorDataset`` of ``(x, y[, task_id])`` keeps each of the exposed tensors
_TENSOR_DATASET_COLUMNS = {"inputs": 0, "targets": 1, "task_ids": 2}


def _exposed(dataset: Dataset, name: str) -> Any:
    """The dataset's whole ``name`` column: its attribute, or a ``TensorDataset``'s tensor."""
    if isinstance(dataset, TensorDataset) and len(dataset.tensors) in (2, 3):
        column = _TENSOR_DATASET_COLUMNS[name]
        return dataset.tensors[column] if column < len(dataset.tensors) else None
    return getattr(dataset, name, None)


def _tensor_attr(dataset: Dataset, name: str, length: int) -> Tensor | None:
    value = _exposed(dataset, name)
    if torch.is_tensor(value) and value.dim() >= 1 and value.shape[0] == length:
        return value
    return None


def _input_leaves(dataset: Dataset, length: int) -> dict[str, Tensor] | None:
    """The dataset's whole ``inputs`` as ``{leaf path: (N, ...)}`` when it exposes them, else ``None``."""
    value = _exposed(dataset, "inputs")
    if value is None or not (torch.is_tensor(value) or nested.is_nested(value)):
        return None
    try:
        leaves = nested.flatten(value)
    except TypeError:
        return None
    if all(leaf.dim() >= 1 and leaf.shape[0] == length for leaf in leaves.values()):
        return leaves
    return None


def _sample_leaves(x: Any, role: str) -> dict[str, Tensor]:
    """``{path: leaf}`` of one sample's ``x``; a clear error for anything but tensors in containers."""
    if not (torch.is_tensor(x) or nested.is_nested(x)):
        raise DataError(f"{role} inputs must be tensors, got {type(x).__name__} (or a dict/tuple/list of tensors)")
    try:
        return nested.flatten(x, INPUTS)
    except TypeError as error:
        raise DataError(f"{role} inputs: {error}") from None


def _describe(x: Any) -> str:
    """How an error names a sample's input: its shape and dtype, or each leaf's."""
    if torch.is_tensor(x):
        return f"input of shape {tuple(x.shape)} and dtype {x.dtype}"
    return f"input with the leaves {nested.describe(nested.flatten(x, INPUTS))}"


def check_dataset(dataset: Dataset, role: str, memory: ReplayMemory) -> None:
    """Refuse a dataset that is not a non-empty map-style dataset of ``(x, y[, task_id])``, or
    whose inputs do not fit what ``memory`` stores.

    ``x`` is a tensor or a dict/tuple/list of tensors; each leaf's per-sample shape and dtype must
    equal the memory's (:meth:`ReplayBuffer.specs`), so text must keep the padded length the
    memory stored. Raises :class:`DataError` (not a dataset of samples) or
    :class:`MemoryShapeError` (naming the leaf, its shape or length and the stored one) before
    anything is trained or written. ``role`` names the dataset in messages ("training").
    """
    n = declared_length(dataset)
    if n is None and not is_stream(dataset):
        raise DataError(f"the {role} dataset must be a map-style Dataset with a length, or an IterableDataset")
    if n == 0:
        raise DataError(f"the {role} dataset is empty; an update needs at least one sample")
    sample = first_sample(dataset, role)  # a stream: the first sample it yields
    if not isinstance(sample, (tuple, list)) or len(sample) not in (2, 3):
        raise DataError(f"{role} samples must be (x, y) or (x, y, task_id) tuples, got {type(sample).__name__}")
    leaves = _sample_leaves(sample[0], role)  # a TensorChunk's samples all share these shapes
    stored = memory.specs()
    if not stored:
        return
    stored_inputs = sorted(k for k in stored if is_input_key(k))
    if sorted(leaves) != stored_inputs:
        raise MemoryShapeError(leaves_mismatch(sorted(leaves), stored_inputs, f"the {role}"))
    offered = nested.structure(sample[0])
    if not nested.same_layout(offered, memory.input_structure):  # same paths, other containers
        raise MemoryShapeError(
            f"the memory holds inputs structured as {memory.input_structure} but the {role} inputs are {offered}"
        )
    for key, leaf in leaves.items():
        shape, dtype = stored[key]
        if leaf.shape == shape and leaf.dtype == dtype:
            continue
        if key == INPUTS:  # a plain tensor: the message the updater has always given
            raise MemoryShapeError(
                f"{role} inputs have shape {tuple(leaf.shape)} and dtype {leaf.dtype}, but the memory holds inputs "
                f"of shape {tuple(shape)} and dtype {dtype}"
            )
        raise MemoryShapeError(f"{role} inputs: " + str(spec_mismatch(key, leaf.shape, leaf.dtype, (shape, dtype))))


def probe_model(model: nn.Module, x: Any, task_id: int, role: str) -> int:
    """Run ``model`` on one sample (eval mode, no grad, nothing changed); return its number of outputs.

    ``x`` is a tensor or a nested dict/tuple/list of tensors (each leaf gets a batch dimension of
    one). A model with a true ``takes_task_ids`` attribute is called as ``model(x, task_ids)``,
    as the Learner calls it.
    """
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    batch = nested.tree_map(lambda leaf: leaf.unsqueeze(0).to(device), x)
    try:
        with evaluating(model):
            out = forward_routed(model, batch, torch.full((1,), task_id, dtype=torch.long, device=device))
    except Exception as error:
        raise DataError(f"the model cannot run on a {role} {_describe(x)}: {type(error).__name__}: {error}") from error
    if not torch.is_tensor(out) or out.dim() != 2 or out.shape[0] != 1:
        shape = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
        raise DataError(
            f"the model must return logits of shape (batch, classes); on one {role} sample it returned {shape}"
        )
    return int(out.shape[1])


def _listed(values: Tensor, most: int = 10) -> str:
    """``"5, 6, 7"``: the distinct values, ascending, the first ``most`` of them."""
    distinct = torch.unique(values).tolist()
    return ", ".join(str(v) for v in distinct[:most]) + (", ..." if len(distinct) > most else "")


def _check_label_tensor(y: Tensor, num_outputs: int, role: str, whole: bool = True) -> None:
    """Class indices in ``0..num_outputs-1``. ``whole``: ``y`` holds every label of the dataset
    (the message counts and lists the bad ones); else only the first sample's."""
    if y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
        raise DataError(f"{role} targets must be integer class indices, got dtype {y.dtype}")
    if y.dim() != 1:
        raise DataError(f"{role} targets must be one class index per sample, got shape {tuple(y.shape)}")
    bad = (y < 0) | (y >= num_outputs)
    if bool(bad.any()):
        index = int(bad.nonzero()[0, 0])
        text = (
            f"{role} label {int(y[index])} (sample {index}) is outside the model's {num_outputs} outputs "
            f"(expected 0..{num_outputs - 1})"
        )
        if whole:
            count = int(bad.sum())
            text += (
                f"; {count} of {y.numel()} labels {'is' if count == 1 else 'are'} outside 0..{num_outputs - 1} "
                f"({_listed(y[bad])})"
            )
        raise DataError(text)


def _check_finite(leaves: dict[str, Tensor], role: str) -> None:
    """Every floating leaf (``{path: (N, ...)}``) finite; integer leaves (token ids) are skipped."""
    for path, x in leaves.items():
        if not (x.dtype.is_floating_point or x.dtype.is_complex):
            continue
        finite = torch.isfinite(x.reshape(x.shape[0], -1)).all(dim=1)
        if not bool(finite.all()):
            index = int((~finite).nonzero()[0, 0])
            where = f"input leaf {f'{INPUTS}{nested.SEPARATOR}{path}'!r}" if path else "inputs"
            raise DataError(
                f"{role} {where} hold{'s' if path else ''} NaN or infinite values in {int((~finite).sum())} samples "
                f"(first: sample {index}); clean or drop them before the update"
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


def _probe_outputs(model: nn.Module, x: Any, transform: Any, route: int, role: str) -> int:
    """The model's output count, probed with ``x`` through ``transform``, else with ``x`` itself
    (a transform whose output the model cannot take is reported by :func:`check_transforms`,
    which names it)."""
    if transform is not None:
        try:
            one = nested.tree_map(lambda leaf: leaf.unsqueeze(0), x)
            return probe_model(
                model, nested.tree_map(lambda leaf: leaf[0], apply_transform(transform, one, role)), route, role
            )
        except Exception:  # noqa: BLE001, S110 - the raw probe below reports what the data itself lacks
            pass
    return probe_model(model, x, route, role)


def check_chunk(
    model: nn.Module, dataset: Dataset, role: str, task_id: int | None, default_task: int, transform: Any = None
) -> None:
    """Refuse a chunk the model cannot train on: names the first bad value and what was expected.

    Called after the basic shape checks (:func:`check_dataset`); ``task_id`` is the
    task passed to ``update`` (``None`` when not given), ``default_task`` the one used instead.
    The model is probed with the first sample as the step feeds it, through ``transform`` (the
    role's input transform): raw inputs the model cannot take itself (uint8 images a transform
    normalises) are fine.
    """
    n = -1 if is_stream(dataset) else len(dataset)  # type: ignore[arg-type]  # a stream's labels: checked per step
    sample: Any = first_sample(dataset, role)
    x = sample[0]
    t0 = sample[2] if len(sample) == 3 else None
    route = default_task if t0 is None else int(torch.as_tensor(t0))
    num_outputs = _probe_outputs(model, x, transform, route, role)

    targets = _tensor_attr(dataset, "targets", n)
    if targets is not None:
        _check_label_tensor(targets, num_outputs, role)
    else:  # the other labels are checked batch by batch as they are trained on (the Learner)
        _check_label_tensor(torch.as_tensor(sample[1]).reshape(1), num_outputs, role, whole=False)
    inputs = _input_leaves(dataset, n)
    _check_finite(
        inputs if inputs is not None else {p: leaf.unsqueeze(0) for p, leaf in nested.flatten(x).items()}, role
    )
    task_ids = _tensor_attr(dataset, "task_ids", n)
    if task_ids is not None:
        _check_task_ids(task_ids, task_id if role == "training" else None, role)
    elif t0 is not None:  # one sample says nothing about the chunk's other task ids
        _check_task_ids(torch.as_tensor(t0).reshape(1), None, role)


def _shape(x: Any) -> Any:
    flat = nested.flatten(x) if not torch.is_tensor(x) else {"": x}
    return tuple(flat[""].shape) if list(flat) == [""] else {k: tuple(v.shape) for k, v in flat.items()}


def check_transforms(
    model: nn.Module, transforms: dict[str, tuple[Any, Any]], dataset: Dataset, task: int | str
) -> None:
    """Refuse, before training, a transform whose output the model cannot run on.

    ``transforms`` maps a role (``train``, ``buffer``, ``test``) to its (input, target) transforms,
    as the Learner holds them; each input transform is run on the chunk's first sample and the
    model probed with the result.
    """
    sample = first_sample(dataset)[0]
    one = nested.tree_map(lambda leaf: leaf.unsqueeze(0), sample)
    route = task if isinstance(task, int) else 0
    for role, (transform, _) in transforms.items():
        name = f"{role}_transform"
        if transform is None:
            continue
        try:
            out = nested.tree_map(lambda leaf: leaf[0], apply_transform(transform, one, name))
            probe_model(model, out, route, name)
        except DataError as error:
            raise DataError(
                f"{name} turns a sample of shape {_shape(sample)} into shape {_shape(out)}, which the "
                f"model cannot run on: {error}"
            ) from error
        except Exception as error:
            raise DataError(
                f"{name} fails on a sample of shape {_shape(sample)}: {type(error).__name__}: {error}"
            ) from error


def check_memory_labels(
    model: nn.Module, memory: ReplayMemory, folder: object, buffer_transforms: tuple[Any, Any] = (None, None)
) -> None:
    """Refuse a restored memory holding labels the model has no output for (a damaged or foreign
    state folder): without this, replaying them fails mid-update with torch's raw ``IndexError``,
    or (label -100, ``CrossEntropyLoss``'s ignored index) as a misleading non-finite loss.

    The model's output count is learnt as :func:`check_chunk` learns it, by probing the model with
    the memory's first sample (through the buffer transform, as replay feeds it); a memory the model
    cannot run on is left to the update's own checks. ``buffer_transforms`` is the Learner's
    ``(buffer_transform, buffer_target_transform)``. Raises :class:`StateError` naming ``folder``,
    the bad labels, their count and the valid range.
    """
    if len(memory) == 0 or "targets" not in memory.keys:
        return
    transform, target_transform = buffer_transforms
    first = memory.rows(0, 1)
    task = int(first.task_ids[0]) if "task_ids" in memory.keys else 0
    try:
        x = nested.tree_map(lambda leaf: leaf[0], apply_transform(transform, first.inputs, "buffer_transform"))
        num_outputs = probe_model(model, x, task, "memory")
        targets = apply_transform(target_transform, memory.decoded("targets"), "buffer_target_transform")
    except Exception:  # noqa: BLE001 - the output count is unknown here; the update reports the cause
        return
    if not torch.is_tensor(targets) or targets.dim() != 1 or targets.dtype.is_floating_point:
        return
    bad = (targets < 0) | (targets >= num_outputs)
    if bool(bad.any()):
        slot = int(bad.nonzero()[0, 0])
        count = int(bad.sum())
        raise StateError(
            f"the memory in {str(folder)!r} holds {count} of {targets.numel()} labels outside the model's "
            f"{num_outputs} outputs (expected 0..{num_outputs - 1}): {_listed(targets[bad])} (first in slot {slot}); "
            "the folder is damaged or was written for another model"
        )
