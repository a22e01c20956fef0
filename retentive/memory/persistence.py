"""The state format of a sample memory: tensors and plain values only, one format for every
tensor backend (:class:`~retentive.memory.buffer.ReplayBuffer`,
:class:`~retentive.memory.unbounded.UnboundedBuffer`), read back by older and newer versions alike.

Only the filled rows are saved, contiguous, on the CPU (a disk-backed memory's as a copy in a
scratch file, never whole in RAM); a restore allocates only those rows (the storage grows as it
fills again), after checking that they fit the backend's budget (the device's, or the disk's).
Every backend reads every other's state: the format does not name the backend. The rows'
identity keys are saved like any key, their source table as ``sources``; a memory saved without
them is given deterministic ones on load (:func:`~retentive.memory.identity.legacy_identity`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import Tensor

from retentive.data import nested
from retentive.errors import MemoryShapeError
from retentive.memory.budget import budget_error, nbytes
from retentive.memory.compact import dtype_from_name, dtype_name
from retentive.memory.identity import ID_KEY, SOURCE_KEY, legacy_identity
from retentive.memory.layout import INPUTS, is_input_key

if TYPE_CHECKING:
    from retentive.memory.buffer import ReplayBuffer


def buffer_state(buffer: ReplayBuffer) -> dict[str, object]:
    """Tensors and plain values only: only the filled rows, contiguous, on the CPU.

    ``dtypes`` names the dtype each key was offered in; it differs from the stored tensor's
    only for compact inputs, which a buffer with another ``input_dtype`` converts on load.
    Nested inputs add ``input_structure`` (plain dicts, lists and ``None``, see
    :func:`retentive.data.nested.structure`) beside their per-leaf storage keys; plain-tensor
    inputs are stored exactly as before nested inputs existed (the one key ``inputs``).
    """
    state: dict[str, object] = {
        "capacity": buffer.capacity,
        "policy": buffer.policy.name,
        "size": buffer.size,
        "seen": buffer.seen,
        "generators": {"insert": buffer.insert_generator.get_state(), "sample": buffer.sample_generator.get_state()},
        "storage": {k: buffer.backend.snapshot(k, v, buffer.size) for k, v in buffer.storage.items()},
        "dtypes": {k: dtype_name(v) for k, v in buffer.dtypes.items()},
    }
    policy_state = buffer.policy.state_dict()
    if policy_state:  # a stateless policy saves none (as before policies declared state_dict)
        state["policy_state"] = policy_state
    if buffer.input_structure is not None:
        state["input_structure"] = buffer.input_structure
    state["sources"] = buffer.sources.state_dict()
    return state


def load_buffer_state(buffer: ReplayBuffer, state: dict[str, object]) -> None:
    """Restore a :meth:`state_dict`: only the saved rows are allocated (the storage grows as it
    fills again), after checking they fit the device's budget."""
    capacity = int(state["capacity"])  # type: ignore[call-overload]
    if capacity != buffer.capacity:
        raise MemoryShapeError(
            f"the saved memory has capacity {capacity} but this updater was built with memory_size={buffer.capacity}"
        )
    size = int(state["size"])  # type: ignore[call-overload]
    if not 0 <= size <= capacity:
        raise MemoryShapeError(f"the saved memory holds {size} samples, outside [0, its capacity {capacity}]")
    storage: dict[str, Tensor] = state["storage"]  # type: ignore[assignment]
    needed = sum(nbytes(rows) for rows in storage.values())
    ok, available, where = buffer.backend.fits(needed, buffer.storage_device)
    if not ok:
        raise budget_error(needed, available, where, f"the {size:,} saved samples")
    buffer.size = size
    buffer.seen = int(state["seen"])  # type: ignore[call-overload]
    generators = state.get("generators")
    if generators is None:  # written before the streams were split: one generator served both
        generators = {"insert": state["generator"], "sample": state["generator"]}
    buffer.insert_generator.set_state(generators["insert"])  # type: ignore[index]
    buffer.sample_generator.set_state(generators["sample"])  # type: ignore[index]
    buffer.policy.load_state_dict(state.get("policy_state") or {})  # type: ignore[arg-type]  # absent: fresh
    # folders written before compact inputs existed store every key as offered
    offered: dict[str, str] = state.get("dtypes") or {k: dtype_name(v.dtype) for k, v in storage.items()}  # type: ignore[assignment]
    structure = state.get("input_structure")
    _check_saved_inputs(list(storage), structure)
    buffer.sources.load_state_dict(state.get("sources"))  # type: ignore[arg-type]
    if storage and ID_KEY not in storage:  # saved before sample identity: deterministic ids, one legacy source
        keys, entry = legacy_identity(storage, size)
        keys[SOURCE_KEY] += len(buffer.sources.entries)
        buffer.sources.entries.append(entry)
        storage = {**storage, **keys}
        offered = {**offered, **{key: "int64" for key in keys}}
    buffer.restore_rows(storage, {key: dtype_from_name(name) for key, name in offered.items()}, structure)


def _check_saved_inputs(keys: list[str], structure: Any) -> None:
    """The saved input leaves must be exactly those the saved structure names."""
    saved = sorted(k for k in keys if is_input_key(k))
    if not saved:
        return
    try:
        expected = sorted(nested.paths(structure, INPUTS))
    except ValueError as error:
        raise MemoryShapeError(f"the saved memory's input structure is not valid: {error}") from None
    if saved != expected:
        raise MemoryShapeError(f"the saved memory stores the input leaves {saved} but its structure names {expected}")
