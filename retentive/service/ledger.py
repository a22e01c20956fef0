"""The watch ledger: which chunks a watch service has finished, kept in the model home it updates.

``<home>/watch-ledger.json``::

    {"format": "retentive-watch-ledger", "source": SOURCE, "settings": {"sha256": ..., ...},
     "chunks": [{"name", "sha256", "outcome", "version", "update", "finished", "seconds",
                 "error" (quarantined), "shift" (a detector's verdict)}, ...],   in the order done
     "pending": null | {"name", "sha256", "data", "base", "started"}}

``outcome`` is ``promoted`` (the chunk's version serves), ``challenger`` (the gate kept it beside
the serving one), ``rejected`` (the gate refused the first candidate: no version serves yet, so
none is kept), ``skipped`` (the shift detector saw no shift: no update) or ``quarantined`` (the
file could not be used; ``error`` says why). Every change is one compare-and-swap write
(:mod:`~retentive.service.store`).

The ledger is not what makes an update happen once: the home's pointer is. Before a chunk is
trained, ``pending`` records it with ``base``, the version it builds on, and ``data``, its data
fingerprint. The update's commit (the pointer naming the new version, or the challenger) is
atomic, and the new version's manifest names both in its lineage (``parent``, ``data.sha256``). A
service killed between that commit and the ledger's next write finds, on restart, a version built
on ``base`` from exactly that chunk (:meth:`Ledger.committed_outcome`), and records the chunk as
done instead of training it again; with no such version the chunk is trained again, from the same
version with the same random streams, so the result is the one an uninterrupted run commits.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from retentive.errors import StateError
from retentive.service.store import Document, JsonStore
from retentive.state.home import ModelHome, Version
from retentive.state.lineage import read_lineage

LEDGER = "watch-ledger.json"
LEDGER_FORMAT = "retentive-watch-ledger"
OUTCOMES = ("promoted", "challenger", "rejected", "skipped", "quarantined")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def settings_digest(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode("utf-8")).hexdigest()


@dataclass
class Ledger:
    """The ledger of one home as last read or written (``document``: what a write must still find)."""

    store: JsonStore
    source: str
    settings: dict[str, Any]
    chunks: list[dict[str, Any]] = field(default_factory=list)
    pending: dict[str, Any] | None = None
    document: Document | None = None

    @classmethod
    def open(cls, home: str, source: str, settings: dict[str, Any], reconfigure: bool = False) -> Ledger:
        """The home's ledger, or a new one; refused when it follows another source or other settings
        (the same chunks with other settings would not give the same versions), unless ``reconfigure``."""
        store = JsonStore(home)
        document = store.read(LEDGER)
        if document is None:
            return cls(store, source, settings)
        data = _checked(document.data, f"{home}/{LEDGER}")
        ledger = cls(store, data["source"], data["settings"], data["chunks"], data["pending"], document)
        if ledger.source != source:
            raise StateError(
                f"{home} is watched from {ledger.source!r}, not {source!r}: one home follows one source "
                "(start a new home for this one)"
            )
        if settings_digest(ledger.settings) != settings_digest(settings):
            if not reconfigure:
                raise StateError(
                    f"{home} was watched with other settings ({_differences(ledger.settings, settings)}); pass the "
                    "same ones to carry on, or --reconfigure to take these from the next chunk on"
                )
            ledger.settings = settings
        return ledger

    @staticmethod
    def read(home: str) -> dict[str, Any] | None:
        """The ledger's fields as stored, checked (``None``: no watch service has written this home)."""
        document = JsonStore(home).read(LEDGER)
        return None if document is None else _checked(document.data, f"{home}/{LEDGER}")

    def done(self) -> set[str]:
        return {entry["name"] for entry in self.chunks}

    def begin(self, name: str, sha256: str, data: str | None, base: dict[str, str] | None) -> None:
        """Record that chunk ``name`` (file ``sha256``, data fingerprint ``data``) is being trained on
        ``base`` (``{"version", "manifest_sha256"}``, ``None``: no version yet), before any training."""
        self.pending = {"name": name, "sha256": sha256, "data": data, "base": base, "started": now()}
        self._write()

    def finish(self, entry: dict[str, Any]) -> None:
        """Record a chunk as done (``entry["outcome"]`` one of :data:`OUTCOMES`); clears ``pending``."""
        if entry.get("outcome") not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, got {entry.get('outcome')!r}")
        self.chunks.append({**entry, "finished": now()})
        self.pending = None
        self._write()

    def _write(self) -> None:
        data = {
            "format": LEDGER_FORMAT,
            "source": self.source,
            "settings": self.settings,
            "chunks": self.chunks,
            "pending": self.pending,
        }
        self.document = self.store.replace(LEDGER, data, self.document)

    def committed_outcome(self, home: ModelHome) -> tuple[str, Version] | None:
        """Whether the pending chunk's update was committed: ``("promoted", version)`` when the current
        version, or ``("challenger", version)`` when the challenger, was built on the pending ``base``
        from the pending chunk's data; ``None`` when neither was (the update must run again)."""
        pending = self.pending
        if pending is None or pending.get("data") is None:
            return None
        base = pending.get("base") or {}
        current = home.current()
        kept = [("promoted", current)] if current is not None and current.id != base.get("version") else []
        challenger = home.challenger()
        if challenger is not None and current is not None and current.id == base.get("version"):
            kept.append(("challenger", challenger))
        for outcome, version in kept:
            lineage = read_lineage(home.manifest(version))
            data = lineage.data or {}
            if lineage.parent == base.get("manifest_sha256") and data.get("sha256") == pending["data"]:
                return outcome, version
        return None


def _checked(data: dict[str, Any], where: str) -> dict[str, Any]:
    """The ledger's fields, each of the expected type; else StateError naming the field."""
    if data.get("format") != LEDGER_FORMAT:
        raise StateError(f"{where} is not a watch ledger (expected format {LEDGER_FORMAT!r})")
    checks = {"source": str, "settings": dict, "chunks": list}
    for key, kind in checks.items():
        if not isinstance(data.get(key), kind):
            raise StateError(f"{where} has {key} {data.get(key)!r}; expected a {kind.__name__}")
    for index, entry in enumerate(data["chunks"]):
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("name"), str)
            or entry.get("outcome") not in OUTCOMES
        ):
            raise StateError(f"{where}: chunks[{index}] is not a chunk record (name, outcome)")
    pending = data.get("pending")
    if pending is not None and (not isinstance(pending, dict) or not isinstance(pending.get("name"), str)):
        raise StateError(f"{where} has pending {pending!r}; expected null or a chunk record")
    return {**data, "pending": pending}


def _differences(recorded: dict[str, Any], given: dict[str, Any]) -> str:
    keys = sorted(key for key in set(recorded) | set(given) if recorded.get(key) != given.get(key))
    return "; ".join(f"{key}: recorded {recorded.get(key)!r}, given {given.get(key)!r}" for key in keys)
