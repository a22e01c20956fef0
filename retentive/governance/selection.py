"""Which stored samples a deletion names: ids, a source chunk, or a predicate on the rows.

Every selector resolves to the sample ids it names before anything is changed, so a deletion
records exactly the ids it removed, and a selector that names nothing the memory holds is an
error (:class:`~retentive.errors.SampleNotFoundError`), never a silent no-op.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

from retentive.errors import SampleNotFoundError
from retentive.memory.buffer import ReplayBuffer
from retentive.memory.identity import SOURCE_KEY

#: the row fields a predicate may name, and the stored key each reads
PREDICATE_FIELDS = {"label": "targets", "task": "task_ids", "update": "update"}


def parse_ids(values: Iterable[object]) -> list[int]:
    """Sample ids given as ints or strings (commas allowed), checked: each an integer in [0, 2^63)."""
    ids: list[int] = []
    for value in values:
        parts = str(value).split(",") if not isinstance(value, int) else [value]
        for part in parts:
            text = str(part).strip()
            if not text:
                continue
            try:
                number = int(text)
            except ValueError:
                raise ValueError(f"sample id {text!r} is not an integer") from None
            if not 0 <= number < 1 << 63:
                raise ValueError(f"sample id {number} is outside [0, 2^63): no sample has it")
            ids.append(number)
    if not ids:
        raise ValueError("no sample ids were given")
    return ids


def parse_predicate(text: str) -> tuple[str, int]:
    """``"label=3"`` -> ``("label", 3)``; the fields are :data:`PREDICATE_FIELDS`."""
    field, sep, value = text.partition("=")
    field = field.strip()
    if not sep or field not in PREDICATE_FIELDS:
        raise ValueError(f"a predicate is FIELD=VALUE with FIELD one of {sorted(PREDICATE_FIELDS)}, got {text!r}")
    try:
        return field, int(value.strip())
    except ValueError:
        raise ValueError(f"the predicate {text!r} needs an integer value") from None


def ids_from_source(memory: ReplayBuffer, source: str) -> Tensor:
    """The ids of every row from the chunk(s) whose fingerprint starts with ``source``."""
    prefix = source.strip()
    if len(prefix) < 6:
        raise ValueError(f"a source is a chunk fingerprint (or its first 6+ characters), got {source!r}")
    matching = [i for i, entry in enumerate(memory.source_entries()) if entry["fingerprint"].startswith(prefix)]
    if not matching:
        raise SampleNotFoundError(f"the memory holds no sample from a source {prefix!r}; nothing was deleted")
    fingerprints = {memory.source_entries()[i]["fingerprint"] for i in matching}
    if len(fingerprints) > 1:
        raise ValueError(f"the source prefix {prefix!r} names several chunks {sorted(fingerprints)}; give more of it")
    rows = torch.isin(memory.decoded(SOURCE_KEY).cpu(), torch.tensor(matching, dtype=torch.int64))
    if not bool(rows.any()):
        raise SampleNotFoundError(f"no sample from the source {prefix!r} is still in the memory; nothing was deleted")
    return memory.sample_ids().cpu()[rows]


def ids_matching(memory: ReplayBuffer, predicates: Sequence[str]) -> Tensor:
    """The ids of every row satisfying all ``predicates`` (``FIELD=VALUE`` each)."""
    if len(memory) == 0:
        raise SampleNotFoundError("the memory is empty; nothing was deleted")
    keep = torch.ones(len(memory), dtype=torch.bool)
    for field, value in (parse_predicate(text) for text in predicates):
        if field == "update":
            updates = torch.tensor([entry["update"] for entry in memory.source_entries()], dtype=torch.int64)
            column = updates[memory.decoded(SOURCE_KEY).cpu()]
        else:
            column = memory.decoded(PREDICATE_FIELDS[field]).cpu().long()
        keep &= column == value
    if not bool(keep.any()):
        raise SampleNotFoundError(f"no stored sample matches {' and '.join(predicates)}; nothing was deleted")
    return memory.sample_ids().cpu()[keep]
