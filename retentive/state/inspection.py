"""What a state folder holds and whether it can be trusted, for ``retentive inspect`` and for code.

:func:`inspect_state` never raises on a damaged folder: it reports what it found (the manifest,
each file's size and checksum status, the memory's class histogram and its inputs' leaves (one
line per stored input tensor, ``inputs`` or ``inputs.input_ids``, with per-sample shape, dtype and
compact storage dtype) when the payloads verify) and
the verification result, plus the debris an interrupted run may have left beside the folder
(staging folders, lock files, resume checkpoints). Payloads are only read after they verify, and
then with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from retentive.errors import StateError
from retentive.memory.layout import is_input_key
from retentive.state.format import MANIFEST, PAYLOADS, _sha256, load_state, read_manifest
from retentive.state.housekeeping import find_leftovers


@dataclass
class FileReport:
    name: str
    bytes: int | None
    expected_bytes: int | None
    expected_sha256: str | None
    ok: bool
    problem: str | None = None


@dataclass
class StateReport:
    path: str
    verified: bool
    error: str | None
    manifest: dict[str, Any] | None
    files: list[FileReport] = field(default_factory=list)
    memory_classes: dict[int, int] | None = None
    #: per stored input leaf (``inputs``, ``inputs.input_ids``, ...): per-sample shape and dtypes
    memory_inputs: dict[str, dict[str, Any]] | None = None
    leftovers: list[str] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(f.bytes or 0 for f in self.files)

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["total_bytes"] = self.total_bytes
        if self.memory_classes is not None:
            record["memory_classes"] = {str(k): v for k, v in self.memory_classes.items()}
        return record


def _file_report(folder: Path, name: str, manifest: dict[str, Any] | None) -> FileReport:
    path = folder / name
    files = (manifest or {}).get("files")
    entry = files.get(name) if isinstance(files, dict) else None
    entry = entry if isinstance(entry, dict) else {}
    expected_bytes, expected_sha = entry.get("bytes"), entry.get("sha256")
    try:
        size = path.stat().st_size if path.is_file() else None
    except OSError as error:
        return FileReport(name, None, expected_bytes, expected_sha, False, f"cannot be read: {error}")
    if size is None:
        return FileReport(name, None, expected_bytes, expected_sha, False, "missing")
    if name == MANIFEST:
        return FileReport(name, size, None, None, manifest is not None, None if manifest else "not a valid manifest")
    if not entry:
        return FileReport(name, size, None, None, False, "not listed in the manifest")
    if size != expected_bytes:
        return FileReport(
            name, size, expected_bytes, expected_sha, False, f"size {size} != {expected_bytes} in the manifest"
        )
    try:
        digest = _sha256(path)
    except OSError as error:
        return FileReport(name, size, expected_bytes, expected_sha, False, f"cannot be read: {error}")
    if digest != expected_sha:
        return FileReport(name, size, expected_bytes, expected_sha, False, "sha256 differs from the manifest")
    return FileReport(name, size, expected_bytes, expected_sha, True)


def _class_histogram(memory: dict[str, Any]) -> dict[int, int] | None:
    storage = memory.get("storage")
    targets = storage.get("targets") if isinstance(storage, dict) else None
    if not torch.is_tensor(targets) or targets.dim() != 1 or targets.dtype.is_floating_point:
        return None
    values, counts = torch.unique(targets.long(), return_counts=True)
    return {int(v): int(c) for v, c in zip(values, counts)}


#: advice written for Python callers -> how it reads for both audiences (``retentive inspect`` is a CLI)
_ADVICE = {
    "rerun it with resume=True to continue": (
        "rerun the same `retentive update` command with --resume to continue from its last completed epoch "
        "(resume=True from Python), or with --fresh to discard it"
    ),
}


def _advice(note: str) -> str:
    for python, both in _ADVICE.items():
        note = note.replace(python, both)
    return note


def _input_leaves(memory: dict[str, Any]) -> dict[str, dict[str, Any]] | None:
    """``{leaf key: {"shape", "dtype", "stored_dtype"}}`` for the memory's input tensors."""
    storage, dtypes = memory.get("storage"), memory.get("dtypes")
    if not isinstance(storage, dict):
        return None
    dtypes = dtypes if isinstance(dtypes, dict) else {}
    leaves = {}
    for key in sorted(storage):
        value = storage[key]
        if torch.is_tensor(value) and is_input_key(key):
            stored = str(value.dtype).removeprefix("torch.")
            leaves[key] = {
                "shape": list(value.shape[1:]),
                "dtype": str(dtypes.get(key, stored)),
                "stored_dtype": stored,
            }
    return leaves or None


def leftovers_beside(folder: str | os.PathLike[str]) -> list[str]:
    """Describe the debris interrupted runs left in ``folder``'s parent (one line each)."""
    return [
        f"{item.path.name}: {item.kind} of {item.target!r}: {_advice(item.note)}"
        for item in find_leftovers(Path(folder).parent)
    ]


def inspect_state(folder: str | os.PathLike[str]) -> StateReport:
    """Report on ``folder`` without raising for damage: ``verified`` says whether it loads."""
    path = Path(folder)
    manifest: dict[str, Any] | None = None
    error: str | None = None
    try:
        manifest = read_manifest(path, allow_checkpoint=True)
    except StateError as problem:
        error = str(problem)
    names = [MANIFEST, *PAYLOADS] if path.is_dir() else []
    report = StateReport(str(path), False, error, manifest, [_file_report(path, n, manifest) for n in names])
    if manifest is not None:
        bad = [f for f in report.files if not f.ok]
        if bad:
            report.error = "; ".join(f"{f.name}: {f.problem}" for f in bad)
        else:
            try:
                state = load_state(path, allow_checkpoint=True)
                report.memory_classes = _class_histogram(state.memory)
                report.memory_inputs = _input_leaves(state.memory)
                report.verified = True
            except StateError as problem:
                report.error = str(problem)
    report.leftovers = leftovers_beside(path)
    return report


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def format_report(report: StateReport) -> str:
    """The report as ``retentive inspect`` prints it."""
    m = report.manifest or {}
    lines = [f"state folder    {report.path}"]
    hyper = m.get("hyperparameters")
    if report.manifest is not None:
        lines.append(
            f"format          {m.get('format')} v{m.get('format_version')} (kind {m.get('kind', 'state')}), written by "
            f"retentive {m.get('retentive_version')} with torch {m.get('torch_version')} at {m.get('created')}"
        )
        lines.append(
            f"updater         {m.get('updater')}; updates done {m.get('updates_done')}; "
            f"tasks seen (task: samples) {m.get('tasks_seen')}"
        )
        if isinstance(hyper, dict):
            lines.append("hyperparameters " + ", ".join(f"{k}={v}" for k, v in sorted(hyper.items())))
        if isinstance(m.get("resume"), dict):
            lines.append(
                f"resume          checkpoint of {m['resume'].get('of')!r} after {m['resume'].get('epochs_done')} epochs"
            )
    lines.append("files")
    for f in report.files:
        status = "ok" if f.ok else f"BAD: {f.problem}"
        digest = f"sha256 {f.expected_sha256[:16]}" if f.expected_sha256 else ""
        lines.append(f"  {f.name:<14}{_size(f.bytes):>12}  {digest:<24}{status}")
    lines.append(f"  {'total':<14}{_size(report.total_bytes):>12}")
    memory = m.get("memory")
    if isinstance(memory, dict):
        capacity = hyper.get("memory_size") if isinstance(hyper, dict) else None
        lines.append(
            f"memory          {memory.get('size')} samples (capacity {capacity}, offered {memory.get('seen')}), "
            f"keys {memory.get('keys')}"
        )
    if report.memory_inputs:
        width = max(len(key) for key in report.memory_inputs)
        lines.append("  inputs (per sample)")
        for key, leaf in report.memory_inputs.items():
            stored = "" if leaf["stored_dtype"] == leaf["dtype"] else f", stored as {leaf['stored_dtype']}"
            lines.append(f"    {key:<{width}}  {tuple(leaf['shape'])} {leaf['dtype']}{stored}")
    if report.memory_classes:
        peak = max(report.memory_classes.values())
        lines.append("  class   count")
        for label, count in report.memory_classes.items():
            lines.append(f"  {label:>5} {count:>7}  " + "#" * max(1, round(40 * count / peak)))
    if report.verified:
        lines.append("verification    OK: every file matches its size and sha256; payloads read with weights_only=True")
    else:
        lines.append(f"verification    FAILED: {report.error}")
    if report.leftovers:
        lines.append("beside it")
        lines.extend(f"  {line}" for line in report.leftovers)
    return "\n".join(lines)
