"""Keeping data-parallel replicas identical: shared randomness, rank 0's buffers, a final check.

DDP keeps the model's parameters identical (same start, same averaged gradients); retentive adds
what DDP does not cover:

- :func:`shared_rng`: component hooks (CLS-ER's teacher-update coin flips, shrink-and-perturb's
  noise) run under a global RNG seeded the same on every rank, so their random choices agree
  whatever the model's forward passes (dropout, uneven batches) drew before them.
- :func:`broadcast_buffers`: buffers such as batch-norm statistics are updated by each rank's own
  last batch (DDP broadcasts them only at the start of a step); at the end of an update every
  rank takes rank 0's.
- :func:`fingerprint` and :func:`check_identical`: at the end of an update every rank hashes its
  model, component state and memory; the hashes are all-gathered and any difference is an error,
  so a replica that drifted is never saved or returned silently.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from retentive.errors import ReplicaMismatchError

_MASK_63 = (1 << 63) - 1


def mix_seed(*values: int) -> int:
    """A 63-bit seed from integers, the same in every process (no salted hashing)."""
    digest = hashlib.sha256(b"".join(int(v).to_bytes(16, "little", signed=True) for v in values)).digest()
    return int.from_bytes(digest[:8], "little") & _MASK_63


def launched_as_global_zero() -> bool:
    """Whether this process is global rank 0, as its launcher says, before any process group exists.

    Decided before the Trainer is built (the updater takes the output lock then): Lightning's
    ``rank_zero_only.rank`` must be 0 (read from ``RANK`` or ``LOCAL_RANK`` when Lightning is
    imported), and so must an initialised process group's rank; else torchrun's or MPI's
    ``RANK``; else the node and local rank (``NODE_RANK``/``GROUP_RANK`` and ``LOCAL_RANK``:
    Lightning's own launcher on node 1 starts its local rank 0 with ``NODE_RANK=1`` and no
    ``RANK``, which Lightning takes for rank 0 until a Trainer exists, and that process must not
    write); else SLURM's ``SLURM_PROCID``. Nothing set: a single process, rank 0.
    """
    from pytorch_lightning.utilities.rank_zero import rank_zero_only

    if getattr(rank_zero_only, "rank", 0) != 0:
        return False
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank() == 0
    env = os.environ
    if "RANK" in env:
        return int(env["RANK"]) == 0
    node = env.get("NODE_RANK", env.get("GROUP_RANK"))
    if node is not None or "LOCAL_RANK" in env:
        return int(node or 0) == 0 and int(env.get("LOCAL_RANK", 0)) == 0
    return int(env.get("SLURM_PROCID", env.get("JSM_NAMESPACE_RANK", 0))) == 0


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's picklable ``obj``, in rank order (``[obj]`` without a process group)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return [obj]
    gathered: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s picklable ``obj`` on every rank (``obj`` itself without a process group)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return obj
    holder = [obj]
    torch.distributed.broadcast_object_list(holder, src=src)
    return holder[0]


def all_gather_stacked(tensor: Tensor) -> Tensor:
    """All ranks' ``tensor`` (equal shapes) stacked as ``(world_size, ...)``, in one collective.

    ``all_gather_into_tensor`` on the default group, which Lightning's DDP strategies use: lower
    latency than Lightning's autograd-aware ``strategy.all_gather`` (benchmarks/ddp_collectives.py).
    """
    world_size = torch.distributed.get_world_size()
    tensor = tensor.contiguous()
    out = tensor.new_empty((world_size * tensor.shape[0], *tensor.shape[1:]) if tensor.dim() else (world_size,))
    torch.distributed.all_gather_into_tensor(out, tensor if tensor.dim() else tensor.reshape(1))
    return out.reshape(world_size, *tensor.shape)


@contextmanager
def shared_rng(seed: int | None, device: torch.device) -> Iterator[None]:
    """Run the block under a global RNG seeded with ``seed`` (``None``: leave the RNG alone).

    The RNG state outside the block is restored afterwards, so the model's own randomness
    (dropout) is unaffected by what the block draws.
    """
    if seed is None:
        yield
        return
    devices = (
        [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    )
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def broadcast_buffers(modules: Iterable[nn.Module], src: int = 0) -> None:
    """Every rank takes rank ``src``'s buffers (in place, one collective per buffer)."""
    for module in modules:
        for buffer in module.buffers():
            torch.distributed.broadcast(buffer.data, src=src)


def _digest(tensor: Tensor) -> bytes:
    """sha256 of the tensor's bytes, read where they are (a memory-mapped memory is not copied to RAM)."""
    data = tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8)
    return hashlib.sha256(data.numpy().data).digest() + str((tensor.dtype, tuple(tensor.shape))).encode()


def fingerprint(state: Any) -> bytes:
    """A sha256 of nested tensors and plain values (dict keys in sorted order)."""
    digest = hashlib.sha256()

    def visit(value: Any) -> None:
        if torch.is_tensor(value):
            digest.update(_digest(value))
        elif isinstance(value, Mapping):
            for key in sorted(value, key=str):
                digest.update(repr(key).encode())
                visit(value[key])
        elif isinstance(value, (list, tuple)):
            digest.update(f"[{len(value)}".encode())
            for item in value:
                visit(item)
        else:
            digest.update(repr(value).encode())

    visit(state)
    return digest.digest()


def check_identical(
    parts: Mapping[str, Any],
    gather: Callable[[Tensor], Tensor],
    device: torch.device,
    when: str = "after the update",
    consequence: str = "the update is not saved",
) -> None:
    """Raise :class:`ReplicaMismatchError` naming each part whose fingerprint differs across ranks
    (``when`` and ``consequence`` word the error: at the end of a fit, or before it starts)."""
    names = sorted(parts)
    local = torch.tensor([list(fingerprint(parts[name])[:8]) for name in names], dtype=torch.uint8, device=device).to(
        torch.int64
    )
    everyone = gather(local).cpu()  # (world_size, parts, 8)
    differing = [name for i, name in enumerate(names) if not bool((everyone[:, i] == everyone[0, i]).all())]
    if differing:
        raise ReplicaMismatchError(
            f"{when} the ranks hold different {', '.join(differing)} (compared by sha256); "
            f"{consequence}. Every rank must build the same model, components and memory "
            "and start from the same state folder (on several nodes: a path every node sees, or a URL; "
            "see docs/how-to/multi-node.md)"
        )
