"""``retentive inspect --history`` and ``--lineage``: a home's versions, and a state's chain of updates.

:func:`home_history` lists the versions a home's pointer keeps (for a single state folder: the
folder and the rollback copy an in-place update keeps), each with a summary of its manifest.
:func:`lineage_chain` follows a state's ``lineage.parent`` digests back through the states it can
find (a home's versions, or a folder, its rollback copy and its sibling folders), newest first;
where an ancestor is no longer there, the ``ancestors`` its descendant carries fill the chain in.
Every manifest is checked before use (format, and its digest: it is looked up by the sha256 of
its bytes), and every field read from one is shown through :func:`repr`, shortened: a crafted
manifest is reported, never a crash.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from retentive.errors import StateError
from retentive.state.format import MANIFEST, check_manifest
from retentive.state.lineage import Lineage, read_lineage
from retentive.state.remote.filesystem import local_path
from retentive.state.remote.names import VERSION_ID, VERSIONS

_MANIFEST_LIMIT = 4 << 20  # a manifest larger than this is not read (a crafted one)
_DEPTH_LIMIT = 10_000


@dataclass
class Link:
    """One state in a chain or a history: where it is, its digest, what its manifest says."""

    digest: str | None
    where: str
    role: str | None = None
    updates_done: Any = None
    created: Any = None
    lineage: dict[str, Any] | None = None
    note: str | None = None  # a gate report, a reason it was set aside
    problem: str | None = None
    problems: list[str] = field(default_factory=list)


def _short(value: Any, limit: int = 72) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=repr)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _link(digest: str | None, where: str, raw: bytes | None, role: str | None = None) -> tuple[Link, Lineage | None]:
    link = Link(digest, where, role)
    if raw is None:
        link.problem = "not found here (removed, or kept elsewhere)"
        return link, None
    try:
        manifest = check_manifest(raw, Path(where))
    except StateError as error:
        link.problem = f"not a valid manifest: {_short(str(error), 160)}"
        return link, None
    lineage = read_lineage(manifest)
    link.updates_done, link.created = _short(manifest.get("updates_done"), 20), _short(manifest.get("created"), 40)
    link.lineage = None if not lineage.recorded else {k: v for k, v in asdict(lineage).items() if k != "problems"}
    link.problems = lineage.problems
    if not lineage.recorded:
        link.problem = "no lineage recorded (written before lineage, or imported)"
    return link, lineage


# ---------------------------------------------------------------- where manifests are found
def _home_manifests(location: str) -> tuple[dict[str, tuple[str, bytes]], list[tuple[Any, str]]]:
    """digest -> (label, bytes) of every version in the home; and the recorded versions with roles."""
    from retentive.state.home import ModelHome

    home = ModelHome(location)
    recorded = home.history()
    roles = {v.id: v.role for v in recorded}
    found: dict[str, tuple[str, bytes]] = {}
    try:
        names = [p.rstrip("/").rsplit("/", 1)[-1] for p in home._fs.ls(f"{home._root}/{VERSIONS}", detail=False)]
    except Exception:
        names = [v.id for v in recorded]
    for name in names:
        if not VERSION_ID.match(name):
            continue
        path = f"{home._root}/{VERSIONS}/{name}/{MANIFEST}"
        try:
            if home._fs.info(path)["size"] > _MANIFEST_LIMIT:
                continue
            raw = home._fs.cat_file(path)
        except Exception:
            continue
        role = roles.get(name)
        found[hashlib.sha256(raw).hexdigest()] = (f"version {name}" + (f" ({role})" if role else ""), raw)
    return found, [(v, f"version {v.id}") for v in recorded]


def _read_small(path: Path) -> bytes | None:
    try:
        if path.stat().st_size > _MANIFEST_LIMIT:
            return None
        return path.read_bytes()
    except OSError:
        return None


def _folder_manifests(folder: Path) -> dict[str, tuple[str, bytes]]:
    """digest -> (label, bytes) of the folder, its in-place rollback copy and its sibling folders."""
    from retentive.state.inplace import previous_path

    found: dict[str, tuple[str, bytes]] = {}
    candidates = [folder, previous_path(folder)]
    with contextlib.suppress(OSError):
        candidates += sorted(p for p in folder.parent.iterdir() if not p.name.startswith(".") and p != folder)
    for path in candidates:
        raw = _read_small(path / MANIFEST)
        if raw is not None:
            found.setdefault(hashlib.sha256(raw).hexdigest(), (str(path), raw))
    return found


def _is_home(location: str | os.PathLike[str]) -> bool:
    from retentive.state.home import is_home

    return is_home(location)


# ---------------------------------------------------------------- history
def home_history(location: str | os.PathLike[str]) -> list[Link]:
    """The versions a home keeps, current first (a single folder: itself and its rollback copy)."""
    if not _is_home(location):
        from retentive.state.inplace import previous_path

        folder = local_path(location)
        links = []
        for path, role in ((folder, "current"), (previous_path(folder), "previous")):
            raw = _read_small(path / MANIFEST)
            if raw is not None or role == "current":
                digest = None if raw is None else hashlib.sha256(raw).hexdigest()
                links.append(_link(digest, str(path), raw, role)[0])
        return links
    found, recorded = _home_manifests(os.fspath(location))
    links = []
    for version, where in recorded:
        raw = found.get(version.manifest_sha256, (where, None))[1]
        link = _link(version.manifest_sha256, where, raw, version.role)[0]
        if raw is None:
            link.problem = "its manifest is missing or does not match the pointer's checksum"
        link.note = _short(version.report, 200) if version.report is not None else version.reason
        links.append(link)
    return links


# ---------------------------------------------------------------- lineage
def lineage_chain(location: str | os.PathLike[str]) -> list[Link]:
    """The chain of states that led to ``location``'s current state, newest first."""
    if _is_home(location):
        from retentive.state.home import ModelHome

        current = ModelHome(location).current()
        if current is None:
            raise StateError(f"{os.fspath(location)!r} has no current version: no lineage to show")
        found, _ = _home_manifests(os.fspath(location))
        start = current.manifest_sha256
    else:
        folder = local_path(location)
        raw = _read_small(folder / MANIFEST)
        if raw is None:
            raise StateError(f"{str(folder)!r} holds no {MANIFEST}: not a state folder or a model home")
        found, start = _folder_manifests(folder), hashlib.sha256(raw).hexdigest()
    return _walk(start, found)


def _walk(start: str, found: dict[str, tuple[str, bytes]]) -> list[Link]:
    chain: list[Link] = []
    seen: set[str] = set()
    digest: str | None = start
    carried: list[dict[str, Any]] = []
    while digest is not None and len(chain) < _DEPTH_LIMIT:
        if digest in seen:
            chain.append(Link(digest, "", problem="a cycle: this digest appeared earlier in the chain (crafted)"))
            return chain
        seen.add(digest)
        where, raw = found.get(digest, ("", None))
        link, lineage = _link(digest, where, raw)
        chain.append(link)
        if lineage is None or not lineage.recorded:
            return chain + _from_ancestors(carried, digest, seen) if raw is None else chain
        carried = lineage.ancestors
        digest = lineage.parent
    return chain


def _from_ancestors(carried: list[dict[str, Any]], missing: str, seen: set[str]) -> list[Link]:
    """Fill the chain from a descendant's ``ancestors`` (oldest first) for states no longer here."""
    if not carried or carried[-1].get("digest") != missing:
        return []
    links = []
    for summary in reversed(carried[:-1]):
        digest = summary.get("digest")
        if not isinstance(digest, str) or digest in seen:
            links.append(Link(None, "", problem=f"ancestors entry {_short(summary)} is malformed or repeats"))
            break
        seen.add(digest)
        links.append(Link(digest, "", lineage={"summary": summary}, note="known from its descendant's ancestors"))
    return links


# ---------------------------------------------------------------- printing
def format_history(location: str, links: list[Link]) -> str:
    lines = [f"history of {location} ({len(links)} versions kept)"]
    for link in links:
        lines.append(f"  {link.role or '?':<11} {link.where:<42} manifest {(link.digest or '?')[:12]}")
        if link.problem:
            lines.append(f"  {'':<11} PROBLEM: {link.problem}")
        else:
            lines.append(f"  {'':<11} updates done {link.updates_done}, created {link.created}")
        if link.note:
            lines.append(f"  {'':<11} {'gate report' if link.role == 'challenger' else 'note'}: {link.note}")
    return "\n".join(lines)


def format_chain(location: str, chain: list[Link]) -> str:
    lines = [f"lineage of {location}, newest first"]
    for index, link in enumerate(chain, 1):
        head = f"  {index}. {(link.digest or '?')[:12]}  {link.where}".rstrip()
        lines.append(head)
        lineage = link.lineage or {}
        if "summary" in lineage:
            lines.append(f"       {link.note}: {_short(lineage['summary'], 160)}")
            continue
        if lineage:
            data = lineage.get("data") or {}
            lines.append(
                f"       update {_short(lineage.get('update'))}, task {_short(lineage.get('task_id'))}, "
                f"updates done {link.updates_done}, created {link.created}"
            )
            lines.append(
                f"       data      {_short(data.get('samples'))} samples, sha256 {_short(data.get('sha256'))[:16]}"
            )
            config = lineage.get("config") or {}
            lines.append(
                f"       updater   {_short(lineage.get('updater'))}, seed {_short(lineage.get('seed'))}, "
                f"{len(config)} settings"
            )
            packages = lineage.get("packages") or {}
            lines.append("       packages  " + _short(", ".join(f"{k} {v}" for k, v in packages.items()), 100))
            gate = lineage.get("gate")
            lines.append(f"       gate      {'none' if gate is None else _short(gate, 100)}")
            if lineage.get("refit") is not None:  # a refit's version (retentive.updaters.refit)
                lines.append(f"       refit     {_short(lineage['refit'], 100)}")
            parent = lineage.get("parent")
            lines.append(f"       parent    {'none: the first update' if parent is None else parent[:12]}")
        for problem in link.problems:
            lines.append(f"       MALFORMED {_short(problem, 100)}")
        if link.problem:
            lines.append(f"       {link.problem}")
    return "\n".join(lines)


def chain_complete(chain: list[Link]) -> bool:
    """Whether the chain reaches the first update with every link readable."""
    if not chain or any(link.problem or link.problems for link in chain):
        return False
    last = chain[-1].lineage or {}
    summary = last.get("summary")
    return summary.get("update") == 0 if isinstance(summary, dict) else last.get("parent") is None


def as_json(links: list[Link]) -> list[dict[str, Any]]:
    return [asdict(link) for link in links]


__all__ = ["Link", "as_json", "chain_complete", "format_chain", "format_history", "home_history", "lineage_chain"]
