"""Host-to-device copies that never make the host wait for the GPU.

A plain ``cpu_tensor.to("cuda")`` copies from pageable memory and then synchronises the stream:
the host waits until every kernel queued before it (the previous step's backward) has finished,
so it cannot queue the next step meanwhile. The memory's replay draws and reservoir decisions
are made on the CPU (their generators stay there, so a run draws the same samples on any device)
and their few indices go to the device every step: through pinned memory with a non-blocking
copy, the host queues the copy and moves on. The training loader pins its batches for the same
reason, unless the chunk already lives on the device.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from retentive.data import nested


def to_device(tensor: Tensor, device: torch.device) -> Tensor:
    """``tensor`` on ``device``; from the CPU to a GPU through pinned memory, without a host sync.

    The caching host allocator keeps the pinned block until the copy has run, so the CPU tensor
    may be changed or freed at once.
    """
    if tensor.device == device:
        return tensor
    if tensor.device.type == "cpu" and device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def dataset_device(dataset: Dataset) -> torch.device | None:
    """The device of a tensor dataset's inputs (``inputs`` leaves), ``None`` for other datasets."""
    inputs: Any = getattr(dataset, "inputs", None)
    if inputs is None or not (torch.is_tensor(inputs) or nested.is_nested(inputs)):
        return None
    leaves = list(nested.flatten(inputs).values()) if nested.is_nested(inputs) else [inputs]
    return leaves[0].device if leaves else None


def pins_batches(dataset: Dataset, device: torch.device) -> bool:
    """Whether the training loader should pin its batches: training on a GPU from host data."""
    held = dataset_device(dataset)
    return device.type == "cuda" and (held is None or held.type == "cpu")
