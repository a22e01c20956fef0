"""The watch service's progress: ``<home>/watch-status.json``, and what ``retentive watch --status`` prints.

The status file is written by the running service whenever its state changes (a chunk starts or
ends, it goes idle, it stops) and at least every :data:`HEARTBEAT_S` seconds while it waits, so
a reader can tell a service that is alive from one that died (``updated`` stops moving). It is
a report, not a record: what is done is the ledger's (:mod:`~retentive.service.ledger`), which
``--status`` reads too.
"""

from __future__ import annotations

import os
import socket
import time
from collections import Counter
from typing import Any

from retentive.service.ledger import OUTCOMES, Ledger, now
from retentive.service.store import JsonStore

STATUS = "watch-status.json"
HEARTBEAT_S = 30.0


class StatusFile:
    """The running service's side: what it is doing now, written to the home."""

    def __init__(self, home: str, source: str) -> None:
        self.store = JsonStore(home)
        self.fields: dict[str, Any] = {
            "source": source,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": now(),
            "state": "starting",
            "chunk": None,
            "last": None,
        }
        self._written = 0.0

    def set(self, **fields: Any) -> None:
        """Record ``fields`` (e.g. ``state="updating", chunk=NAME``) and write the file."""
        self.fields.update(fields)
        self.fields["updated"] = now()
        self.store.overwrite(STATUS, self.fields)
        self._written = time.monotonic()

    def heartbeat(self) -> None:
        if time.monotonic() - self._written >= HEARTBEAT_S:
            self.set()


def read_status(home: str) -> dict[str, Any]:
    """The service's last status and the ledger's totals, as one JSON object."""
    store = JsonStore(home)
    document = store.read(STATUS)
    ledger = Ledger.read(home)
    chunks = [] if ledger is None else ledger["chunks"]
    counts = Counter(entry["outcome"] for entry in chunks)
    return {
        "home": home,
        "service": None if document is None else document.data,
        "watched": ledger is not None,
        "source": None if ledger is None else ledger["source"],
        "counts": {outcome: counts.get(outcome, 0) for outcome in OUTCOMES},
        "pending": None if ledger is None else ledger["pending"],
        "chunks": chunks,
        "quarantined": [e for e in chunks if e["outcome"] == "quarantined"],
    }


def format_status(status: dict[str, Any], last: int = 10) -> str:
    """``retentive watch --status``'s text: the service, the totals, the last chunks, every quarantined one."""
    home = status["home"]
    if not status["watched"]:
        return f"{home}: no watch service has processed a chunk here yet"
    service = status["service"] or {}
    lines = [
        f"{home}: watching {status['source']}",
        f"  service: {service.get('state', 'unknown')} (pid {service.get('pid')} on {service.get('host')}, "
        f"last seen {service.get('updated')})",
        "  chunks: " + ", ".join(f"{n} {outcome}" for outcome, n in status["counts"].items()),
    ]
    if status["pending"] is not None:
        lines.append(f"  in progress: {status['pending']['name']} (since {status['pending'].get('started')})")
    for entry in status["chunks"][-last:]:
        lines.append(f"  {describe(entry)}")
    earlier = [e for e in status["quarantined"] if e not in status["chunks"][-last:]]
    lines.extend(f"  {describe(entry)}" for entry in earlier)
    return "\n".join(lines)


def describe(entry: dict[str, Any]) -> str:
    """One chunk's record as the log line and ``--status`` show it."""
    name, outcome = entry["name"], entry["outcome"]
    if outcome == "quarantined":
        return f"{name}: quarantined: {entry.get('error')}"
    if outcome == "skipped":
        shift = entry.get("shift") or {}
        return f"{name}: skipped, no shift ({shift.get('detector')} p-value {shift.get('p_value', float('nan')):.3g})"
    if outcome == "rejected":
        return f"{name}: refused by the gate; nothing kept (no version serves yet)"
    where = "serves" if outcome == "promoted" else "kept as the challenger (the gate refused it)"
    seconds = entry.get("seconds")
    took = "" if seconds is None else f" in {seconds:.1f} s"
    return f"{name}: update {entry.get('update')}{took}, version {entry.get('version')} {where}"
