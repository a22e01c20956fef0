"""Lineage: what every state's manifest records about how it was made, so any model can be traced.

``manifest["lineage"]`` (written by every update, :func:`lineage_record`)::

    {"format": 1,
     "parent": <sha256 of the parent state's manifest bytes> | null (the first update),
     "ancestors": [{"digest", "update", "task_id", "samples", "data_sha256", "seed", "updater",
                    "gate_passed"}, ...]   every earlier update, oldest first (ANCESTOR_LIMIT),
     "update": <index of this update, 0 for the first>, "task_id": ...,
     "data": {"samples": N, "sha256": ..., "method": DATA_FINGERPRINT},
     "updater": <class name>, "config": {<every hyperparameter>}, "seed": <the updater's seed>,
     "packages": {"python": ..., "retentive": ..., "torch": ..., "pytorch_lightning": ..., "numpy": ...},
     "gate": null | {<the gate's report>},
     "refit": {"epochs", "samples", "batch_size"}   only in a refit's version: the state re-trained
              on its memory (the parent), with "update" and "task_id" those of the update refit}

The parent is named by its manifest digest, the same name :mod:`~retentive.state.concurrency`
and a home's pointer use (``manifest_sha256``), so the chain can be followed through a home's
versions or a pipeline's folders (:mod:`~retentive.state.ancestry`); ``ancestors`` carries a
summary of every earlier update in the manifest itself, so the chain back to the first update
can be printed even when the earlier states are gone (a home keeps only a few versions). The data fingerprint is
cheap and stable: the sha256 of the labels tensor when the chunk exposes one as ``targets``, and
of every tensor of three samples (the first, the middle and the last), with the sample count; it
names a chunk without reading it whole (:func:`~retentive.state.fingerprint.dataset_fingerprint`,
the one resume checkpoints use). ``gate`` is the slot for the gate's report: an updater's
``gate_report`` (a JSON object) when its state is written, ``None`` when no gate ran.

A manifest is data from disk or a store: :func:`read_lineage` checks each field and reports what
is malformed instead of raising, so a crafted manifest can be inspected, never crash a reader.
"""

from __future__ import annotations

import platform
import re
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from torch.utils.data import Dataset

from retentive.state.fingerprint import dataset_fingerprint

LINEAGE = "lineage"
LINEAGE_FORMAT = 1
DATA_FINGERPRINT = "sha256 of the labels tensor (if exposed as .targets) and of every tensor of samples 0, n//2, n-1"
_PACKAGES = ("retentive", "torch", "pytorch_lightning", "numpy")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def package_versions() -> dict[str, str]:
    """The versions of Python and of the packages that decide what an update computes."""
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def chunk_fingerprint(dataset: Dataset) -> dict[str, Any]:
    """The data fingerprint of one chunk (see the module docstring for what it hashes); a chunk
    whose samples cannot be hashed (no tensors) records ``sha256: None`` and why, never fails."""
    try:
        return {**dataset_fingerprint(dataset), "method": DATA_FINGERPRINT}
    except Exception as error:
        try:
            samples: int | None = len(dataset)  # type: ignore[arg-type]
        except Exception:
            samples = None
        return {"samples": samples, "sha256": None, "method": DATA_FINGERPRINT, "unavailable": str(error)[:200]}


#: the most ancestors a manifest carries (about 300 bytes each); older ones are dropped, counted
ANCESTOR_LIMIT = 1000


def ancestors_of(parent: Any, digest: str | None) -> list[dict[str, Any]]:
    """The ``ancestors`` of a state built on the state ``digest`` whose lineage is ``parent``:
    the parent's own ancestors, then the parent itself (its lineage read defensively)."""
    if digest is None:
        return []
    held = read_lineage({LINEAGE: parent}) if parent is not None else Lineage(recorded=False)
    earlier = parent.get("ancestors") if isinstance(parent, dict) else None
    earlier = [a for a in earlier if isinstance(a, dict)] if isinstance(earlier, list) else []
    data = held.data or {}
    gate = held.gate or {}
    summary = {
        "digest": digest,
        "update": held.update,
        "task_id": held.task_id,
        "samples": data.get("samples"),
        "data_sha256": data.get("sha256"),
        "seed": held.seed,
        "updater": held.updater,
        "gate_passed": gate.get("passed") if isinstance(gate.get("passed"), bool) else None,
    }
    return [*earlier, summary][-ANCESTOR_LIMIT:]


def lineage_record(
    *,
    parent: str | None,
    ancestors: list[dict[str, Any]],
    update: int,
    task_id: int | str,
    data: dict[str, Any] | None,
    updater: str,
    config: dict[str, Any],
    seed: int,
    gate: dict[str, Any] | None = None,
    refit: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``lineage`` entry of a manifest (see the module docstring); ``refit`` only for a
    refit's version (:mod:`retentive.updaters.refit`)."""
    return {
        "format": LINEAGE_FORMAT,
        "parent": parent,
        "ancestors": ancestors,
        "update": update,
        "task_id": task_id,
        "data": data,
        "updater": updater,
        "config": config,
        "seed": seed,
        "packages": package_versions(),
        "gate": gate,
        **({"refit": refit} if refit is not None else {}),
    }


@dataclass
class Lineage:
    """A manifest's lineage as read: each field checked; what is malformed is listed in ``problems``
    and read as absent (``None``) instead."""

    parent: str | None = None
    update: int | None = None
    task_id: int | str | None = None
    data: dict[str, Any] | None = None
    updater: str | None = None
    config: dict[str, Any] | None = None
    seed: int | None = None
    packages: dict[str, str] | None = None
    gate: dict[str, Any] | None = None
    refit: dict[str, Any] | None = None
    ancestors: list[dict[str, Any]] = field(default_factory=list)
    recorded: bool = True
    problems: list[str] = field(default_factory=list)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_CHECKS: dict[str, Any] = {
    "parent": lambda v: isinstance(v, str) and bool(_SHA256.match(v)),
    "update": lambda v: _is_int(v) and v >= 0,
    "task_id": lambda v: (_is_int(v) and v >= 0) or (isinstance(v, str) and 0 < len(v) <= 200),
    "data": lambda v: isinstance(v, dict) and isinstance(v.get("sha256"), (str, type(None))),
    "updater": lambda v: isinstance(v, str) and 0 < len(v) <= 200,
    "config": lambda v: isinstance(v, dict),
    "seed": _is_int,
    "packages": lambda v: isinstance(v, dict) and all(isinstance(k, str) and isinstance(x, str) for k, x in v.items()),
    "gate": lambda v: isinstance(v, dict),
    "refit": lambda v: isinstance(v, dict),
}


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_lineage(manifest: dict[str, Any]) -> Lineage:
    """The lineage a manifest records; never raises (a state written before lineage, or a crafted
    field, is reported in ``recorded`` / ``problems``)."""
    record = manifest.get(LINEAGE)
    if record is None:
        return Lineage(recorded=False)
    if not isinstance(record, dict):
        return Lineage(problems=[f"lineage is {_short(record)}, not an object"])
    lineage = Lineage()
    for name, check in _CHECKS.items():
        value = record.get(name)
        if value is None:
            continue
        try:
            ok = bool(check(value))
        except Exception:  # a check of a crafted value must not raise
            ok = False
        if ok:
            setattr(lineage, name, value)
        else:
            lineage.problems.append(f"{name} is {_short(value)}")
    ancestors = record.get("ancestors", [])
    if isinstance(ancestors, list) and all(isinstance(a, dict) for a in ancestors):
        lineage.ancestors = ancestors
    else:
        lineage.problems.append(f"ancestors is {_short(ancestors)}")
    return lineage
