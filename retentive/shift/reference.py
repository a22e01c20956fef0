"""Reference data for a shift test: the replay memory a state folder already holds, or a dataset.

Drift detection costs no extra storage: the memory an update saved (``memory.pt``, verified and
read code-free like the rest of the folder) is a sample of what the model has seen, in the inputs'
own structure (a tensor, or nested leaves such as ``input_ids``/``attention_mask``), decoded from
compact storage, with its labels.
"""

from __future__ import annotations

import os

import torch

from retentive.data.tensors import TensorChunk
from retentive.errors import StateError
from retentive.memory.buffer import ReplayBuffer
from retentive.state.format import load_state


def memory_reference(folder: str | os.PathLike[str]) -> TensorChunk:
    """The samples of ``folder``'s replay memory as a :class:`TensorChunk` (inputs, targets, task ids).

    Raises :class:`StateError` when the folder does not verify, keeps no replay samples (an updater
    without a memory, or a generative one), or its memory is empty.
    """
    memory = load_state(folder).memory
    if not isinstance(memory.get("storage"), dict) or "capacity" not in memory:
        raise StateError(
            f"the state folder {str(folder)!r} keeps no replay samples (its updater has no sample memory, e.g. a "
            "generative one), so it gives no reference data; pass a reference dataset instead"
        )
    size = int(memory.get("size", 0))
    if size == 0 or int(memory["capacity"]) == 0:
        raise StateError(
            f"the replay memory of {str(folder)!r} is empty (0 samples, capacity {int(memory['capacity'])}): there is no "
            "reference data to test against; use a state written with memory_size > 0, or pass a reference dataset"
        )
    buffer = ReplayBuffer(int(memory["capacity"]))
    buffer.load_state_dict(memory)
    rows = buffer.rows(0, size)
    task_ids = rows.data.get("task_ids")
    return TensorChunk(rows.inputs, rows.targets.long(), None if task_ids is None else task_ids.long())


def num_classes_of(*labels: torch.Tensor | None) -> int:
    """One more than the largest label among ``labels`` (0 if none)."""
    present = [int(y.max()) + 1 for y in labels if y is not None and y.numel()]
    return max(present, default=0)
