"""How the memory lays a (possibly nested) sample out as flat storage keys, and how it says no.

A batch offered to the memory is ``{"inputs": x, "targets": ..., "task_ids": ..., <metadata>}``
where ``x`` is a tensor or a dict/tuple/list of tensors. The memory stores one preallocated tensor
per *storage key*: the metadata keys as they are, and one key per input leaf, named by
:func:`retentive.data.nested.flatten` under the prefix ``inputs``:

- a plain tensor input is the single key ``inputs`` (exactly as before nested inputs existed,
  so state folders written then load unchanged);
- ``{"input_ids": ..., "attention_mask": ...}`` is ``inputs.attention_mask`` and
  ``inputs.input_ids``; a tuple ``(a, b)`` is ``inputs.0`` and ``inputs.1``.

These are the names every error message, ``retentive inspect`` and the chunk files use.

Variable-length inputs (text) follow one rule: every leaf has a fixed per-sample shape, the one
of the first sample the memory stored; tokenise with padding to a fixed length
(``padding="max_length"``). A sample of another length is refused, naming the leaf, its length
and the stored one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from retentive.data import nested
from retentive.errors import MemoryShapeError

INPUTS = "inputs"
_INPUT_PREFIX = INPUTS + nested.SEPARATOR

Spec = tuple[torch.Size, torch.dtype]


def is_input_key(key: str) -> bool:
    """True for the storage key of an input leaf (``inputs`` or ``inputs.<path>``)."""
    return key == INPUTS or key.startswith(_INPUT_PREFIX)


def flat_rows(batch: Mapping[str, Any]) -> dict[str, Tensor]:
    """``batch`` with its nested ``inputs`` flattened into one storage key per leaf.

    Raises :class:`MemoryShapeError` for a leaf that is not a tensor, or a metadata key that
    would collide with an input leaf's name.
    """
    rows: dict[str, Tensor] = {}
    for key, value in batch.items():
        if key == INPUTS:
            try:
                rows.update(nested.flatten(value, INPUTS))
            except TypeError as error:
                raise MemoryShapeError(f"memory inputs: {error}") from None
        elif is_input_key(key):
            raise MemoryShapeError(
                f"memory metadata key {key!r} collides with the input leaves' names ('inputs.<leaf>')"
            )
        elif not torch.is_tensor(value):
            raise MemoryShapeError(f"memory key {key!r} must be a tensor, got {type(value).__name__}")
        else:
            rows[key] = value
    return rows


def batch_size(rows: Mapping[str, Tensor]) -> int:
    """The leading size every key shares (an error naming each key's size if they disagree)."""
    first = next(iter(rows.values()), None)
    if first is not None and first.dim():
        n = first.shape[0]
        if all(value.dim() and value.shape[0] == n for value in rows.values()):  # the per-step path
            return int(n)
    sizes = {key: int(value.shape[0]) if value.dim() else -1 for key, value in rows.items()}
    if len(set(sizes.values())) != 1 or -1 in sizes.values():
        raise MemoryShapeError(f"memory batch keys disagree on the batch size: {sizes}")
    return next(iter(sizes.values()))


def leaves_mismatch(offered: list[str], stored: list[str], role: str = "the batch's") -> str:
    """The message for inputs whose leaves are not the memory's (another dict key, a plain tensor)."""
    show = lambda keys: ", ".join(keys) if keys else "none"  # noqa: E731
    return (
        f"the memory holds inputs with the leaves [{show(stored)}] but {role} inputs have [{show(offered)}]; "
        "every sample must have the same keys (a plain tensor is the single leaf 'inputs')"
    )


def spec_mismatch(key: str, shape: torch.Size, dtype: torch.dtype, stored: Spec) -> str | None:
    """Why a per-sample ``(shape, dtype)`` does not fit the stored spec of ``key``; ``None`` if it fits.

    For an input leaf whose rank matches but whose sizes differ (text of another padded length)
    the message names the lengths and the fixed-length rule.
    """
    stored_shape, stored_dtype = stored
    if shape == stored_shape and dtype == stored_dtype:
        return None
    what = "input leaf" if key != INPUTS and is_input_key(key) else "key"
    message = (
        f"memory {what} {key!r} holds samples of shape {tuple(stored_shape)} and dtype {stored_dtype}, "
        f"got shape {tuple(shape)} and dtype {dtype}"
    )
    if is_input_key(key) and len(shape) == len(stored_shape) and shape != stored_shape:
        dim = next(i for i, (a, b) in enumerate(zip(shape, stored_shape)) if a != b)
        message += (
            f": length {shape[dim]} in dimension {dim} where the memory stores length {stored_shape[dim]}; "
            f"every input leaf has one fixed per-sample shape, so pad (or truncate) to length "
            f"{stored_shape[dim]} (tokenizers: padding='max_length', max_length={stored_shape[dim]})"
        )
    return message


def check_rows(rows: Mapping[str, Tensor], specs: Mapping[str, Spec]) -> None:
    """Refuse ``rows`` (batched) whose keys or per-sample shapes/dtypes differ from ``specs``.

    ``specs`` empty means nothing is stored yet, and anything fits.
    """
    if not specs:
        return
    if rows.keys() == specs.keys() and all(
        value.shape[1:] == specs[key][0] and value.dtype == specs[key][1] for key, value in rows.items()
    ):  # the per-step path: everything fits
        return
    offered_inputs = sorted(k for k in rows if is_input_key(k))
    stored_inputs = sorted(k for k in specs if is_input_key(k))
    if offered_inputs != stored_inputs:
        raise MemoryShapeError(leaves_mismatch(offered_inputs, stored_inputs))
    if set(rows) != set(specs):
        raise MemoryShapeError(f"memory holds keys {sorted(specs)} but the batch has {sorted(rows)}")
    for key, value in rows.items():
        problem = spec_mismatch(key, value.shape[1:], value.dtype, specs[key])
        if problem is not None:
            raise MemoryShapeError(problem)
