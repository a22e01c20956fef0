"""Nested inputs: a sample's ``x`` is a tensor or a dict/tuple/list of tensors (tokenised text).

Every path that handles inputs (the Learner's step, the memory, the DDP exchange, the state
folder, chunk checks) goes through these few functions, so a nested input is handled the same way
everywhere. A nested value is flattened to ``{path: leaf}`` with paths such as ``""`` (a plain
tensor), ``"input_ids"`` or ``"0.pixels"``; :func:`structure` records the containers so that
:func:`unflatten` rebuilds the same value.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

Nested = Tensor | Mapping[str, Any] | Sequence[Any]

SEPARATOR = "."


def is_nested(x: Any) -> bool:
    """True for a dict, tuple or list (of tensors or further containers)."""
    return isinstance(x, (Mapping, tuple, list))


def flatten(x: Any, prefix: str = "") -> dict[str, Tensor]:
    """``{path: leaf}`` in a fixed order (dict keys sorted); a plain tensor is ``{"": x}``."""
    if torch.is_tensor(x):
        return {prefix: x}
    if isinstance(x, Mapping):
        out: dict[str, Tensor] = {}
        for key in sorted(x):
            if not isinstance(key, str) or not key or SEPARATOR in key:
                raise TypeError(f"nested input keys must be non-empty strings without {SEPARATOR!r}, got {key!r}")
            out.update(flatten(x[key], f"{prefix}{SEPARATOR}{key}" if prefix else key))
        return out
    if isinstance(x, (tuple, list)):
        if not x:
            raise TypeError("a nested input container must not be empty")
        out = {}
        for i, item in enumerate(x):
            out.update(flatten(item, f"{prefix}{SEPARATOR}{i}" if prefix else str(i)))
        return out
    raise TypeError(f"inputs must be tensors or dicts/tuples/lists of tensors, got {type(x).__name__}")


def structure(x: Any) -> Any:
    """The containers of ``x`` with every leaf replaced by ``None``: plain data, JSON-able."""
    if torch.is_tensor(x):
        return None
    if isinstance(x, Mapping):
        return {"dict": {key: structure(x[key]) for key in sorted(x)}}
    if isinstance(x, (tuple, list)):
        return {type(x).__name__: [structure(item) for item in x]}
    raise TypeError(f"inputs must be tensors or dicts/tuples/lists of tensors, got {type(x).__name__}")


def unflatten(flat: Mapping[str, Tensor], spec: Any, prefix: str = "") -> Any:
    """Rebuild the value that :func:`flatten` and :func:`structure` took apart."""
    if spec is None:
        return flat[prefix]
    ((kind, children),) = spec.items()
    if kind == "dict":
        return {
            key: unflatten(flat, child, f"{prefix}{SEPARATOR}{key}" if prefix else key)
            for key, child in children.items()
        }
    items = [
        unflatten(flat, child, f"{prefix}{SEPARATOR}{i}" if prefix else str(i)) for i, child in enumerate(children)
    ]
    return tuple(items) if kind == "tuple" else items


def tree_map(fn: Callable[[Tensor], Tensor], x: Any) -> Any:
    """``fn`` applied to every leaf, the containers kept."""
    if torch.is_tensor(x):
        return fn(x)
    flat = flatten(x)
    return unflatten({path: fn(leaf) for path, leaf in flat.items()}, structure(x))


def batch_size(x: Any) -> int:
    """The leading dimension shared by every leaf (an error naming the leaves if they disagree)."""
    sizes = {path or "inputs": int(leaf.shape[0]) if leaf.dim() else -1 for path, leaf in flatten(x).items()}
    if len(set(sizes.values())) != 1 or -1 in sizes.values():
        raise ValueError(f"every input leaf must share the batch dimension, got sizes {sizes}")
    return next(iter(sizes.values()))


def cat(values: Sequence[Any]) -> Any:
    """Concatenate nested batches of one structure along the batch dimension."""
    if torch.is_tensor(values[0]):
        return torch.cat(list(values))
    flats = [flatten(v) for v in values]
    keys = list(flats[0])
    for other in flats[1:]:
        if list(other) != keys:
            raise ValueError(f"nested batches differ in their leaves: {keys} against {list(other)}")
    return unflatten({k: torch.cat([f[k] for f in flats]) for k in keys}, structure(values[0]))


def index(x: Any, idx: int | list[int] | Tensor | slice) -> Any:
    """The rows ``idx`` of every leaf."""
    return tree_map(lambda leaf: leaf[idx], x)


def to(x: Any, device: torch.device | str) -> Any:
    """Every leaf moved to ``device``."""
    return tree_map(lambda leaf: leaf.to(device), x)


def detach(x: Any) -> Any:
    return tree_map(lambda leaf: leaf.detach(), x)


def same_layout(a: Any, b: Any) -> bool:
    """True when two structures (from :func:`structure`) differ at most in tuple-versus-list.

    A DataLoader's collate turns a sample's tuple into a list, so the two count as one layout.
    """
    if a is None or b is None:
        return a is None and b is None
    ((kind_a, children_a),) = a.items()
    ((kind_b, children_b),) = b.items()
    if (kind_a == "dict") != (kind_b == "dict") or len(children_a) != len(children_b):
        return False
    if kind_a == "dict":
        return list(children_a) == list(children_b) and all(
            same_layout(children_a[k], children_b[k]) for k in children_a
        )
    return all(same_layout(x, y) for x, y in zip(children_a, children_b))


def describe(flat: Mapping[str, Tensor], batched: bool = False) -> str:
    """``{path: leaf}`` as ``"input_ids (32,) int64, attention_mask (32,) int64"`` for messages.

    ``batched`` drops each leaf's leading (batch) dimension from the shape shown.
    """
    parts = []
    for path, leaf in flat.items():
        shape = tuple(leaf.shape[1:] if batched else leaf.shape)
        parts.append(f"{path or '(tensor)'} {shape} {str(leaf.dtype).removeprefix('torch.')}")
    return ", ".join(parts)


def paths(spec: Any, prefix: str = "") -> list[str]:
    """The leaf paths a structure (from :func:`structure`) names, in :func:`flatten`'s order."""
    if spec is None:
        return [prefix]
    if not isinstance(spec, Mapping) or len(spec) != 1:
        raise ValueError(f"not a nested structure: {spec!r}")
    ((kind, children),) = spec.items()
    named: Iterable[tuple[str, Any]]
    if kind == "dict" and isinstance(children, Mapping):
        named = children.items()
    elif kind in ("tuple", "list") and isinstance(children, list):
        named = ((str(i), child) for i, child in enumerate(children))
    else:
        raise ValueError(f"not a nested structure: {spec!r}")
    out: list[str] = []
    for key, child in named:
        out.extend(paths(child, f"{prefix}{SEPARATOR}{key}" if prefix else key))
    return out
