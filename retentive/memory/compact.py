"""Compact storage of memory inputs: the memory may hold its inputs in a smaller dtype.

Opt-in through ``ReplayBuffer(input_dtype=...)``. The model always sees the inputs in the dtype
they were offered in; only the stored copy is compact. For nested inputs (a dict of token ids,
masks and pixels) the compact dtype applies to each floating leaf; integer and bool leaves are
stored as given (the buffer never calls :func:`encode` on them).

- ``"uint8"``: images in ``[0, 1]`` with 256 levels (``k / 255``, as MNIST and torchvision's
  ``ToTensor`` produce them) are stored as ``k`` and decoded as ``k / 255`` in the offered dtype.
  It is exact — every decoded value is bit-identical to the one offered — and a sample that is
  not of that form is refused, never silently rounded. 4x smaller than float32.
- ``"float16"`` / ``"bfloat16"``: any floating inputs, rounded to that dtype (lossy, 2x smaller).
"""

from __future__ import annotations

import torch
from torch import Tensor

from retentive.errors import MemoryShapeError

#: The compact dtypes a memory can store its inputs in, by config name.
INPUT_DTYPES: dict[str, torch.dtype] = {"uint8": torch.uint8, "float16": torch.float16, "bfloat16": torch.bfloat16}
UINT8_LEVELS = 255.0


def parse_input_dtype(value: str | torch.dtype | None) -> torch.dtype | None:
    """``None`` (inputs stored as offered) or one of :data:`INPUT_DTYPES`, by name or dtype."""
    if value is None:
        return None
    if isinstance(value, torch.dtype):
        if value in INPUT_DTYPES.values():
            return value
    elif isinstance(value, str) and value.removeprefix("torch.") in INPUT_DTYPES:
        return INPUT_DTYPES[value.removeprefix("torch.")]
    raise ValueError(f"memory input_dtype must be None or one of {sorted(INPUT_DTYPES)}, got {value!r}")


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float32`` -> ``"float32"`` (a plain string for state files)."""
    return str(dtype).removeprefix("torch.")


def dtype_from_name(name: str) -> torch.dtype:
    dtype = getattr(torch, str(name), None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"{name!r} is not a torch dtype name")
    return dtype


def encode(inputs: Tensor, stored: torch.dtype | None) -> Tensor:
    """``inputs`` as the memory stores them; raises if ``uint8`` storage would not be exact."""
    if stored is None or inputs.dtype == stored:
        return inputs
    if not inputs.dtype.is_floating_point:
        raise MemoryShapeError(
            f"memory input_dtype={dtype_name(stored)!r} compacts floating-point inputs, got {dtype_name(inputs.dtype)}"
        )
    if stored != torch.uint8:
        return inputs.to(stored)
    levels = (inputs * UINT8_LEVELS).round_()
    codes = levels.clamp_(0, UINT8_LEVELS).to(torch.uint8)
    exact = decode(codes, inputs.dtype) == inputs
    if not bool(exact.all()):
        bad = inputs[~exact][0]
        raise MemoryShapeError(
            f"memory input_dtype='uint8' stores images with values k/255 in [0, 1] exactly, got the value "
            f"{float(bad)!r}; use input_dtype=None (or 'float16') for other inputs"
        )
    return codes


def decode(stored: Tensor, dtype: torch.dtype) -> Tensor:
    """Stored inputs back in the dtype they were offered in."""
    if stored.dtype == dtype:
        return stored
    if stored.dtype == torch.uint8 and dtype.is_floating_point:
        return stored.to(dtype).div_(UINT8_LEVELS)
    return stored.to(dtype)
