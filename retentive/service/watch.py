"""The watch service: every chunk that arrives in a source becomes one update of a model home,
in name order, exactly once, across kills and restarts.

For each chunk not yet in the ledger (:mod:`~retentive.service.ledger`), oldest name first:
fetch and read it (unreadable: quarantined), build the updater on the home's current version,
record the chunk as pending, ask the shift detector (no shift: skipped), update with the gate,
and record the outcome. The update's commit is the home's pointer; the pending record lets a
restarted service tell whether that commit happened (see the ledger's docstring), so a SIGKILL
at any moment neither loses a chunk nor takes one twice.

SIGTERM and Ctrl-C stop the service cleanly: an update under way is abandoned at the next step
boundary (nothing half-written: the commit itself is never split), what was committed is
recorded, and the service returns the signal it stopped on. A chunk abandoned that way is
taken again, first, at the next start.
"""

from __future__ import annotations

import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from retentive.errors import DataError, StateError
from retentive.service.chunk import ChunkUpdater, WatchSettings, fits, read_checked, seconds_since
from retentive.service.ledger import Ledger
from retentive.service.sources import ChunkSource
from retentive.service.status import StatusFile, describe
from retentive.state.home import ModelHome, is_home
from retentive.state.remote.filesystem import is_url, local_path


def prepare_home(home: str) -> ModelHome:
    """The home to update: a URL, a local home, or an absent or empty folder made one; anything
    else (a single state folder, a folder of other files) is refused."""
    if not is_url(home):
        path = local_path(home)
        if path.exists() and not path.is_dir():
            raise StateError(f"--home {home!r} is a file, not a model home")
        if path.is_dir() and not is_home(path) and any(path.iterdir()):
            kind = "a single state folder" if (path / "manifest.json").exists() else "a folder of other files"
            raise StateError(
                f"--home {home!r} is {kind}, not a model home (current.json, versions/): give an empty or new folder"
            )
    return ModelHome(home).create()


class WatchService:
    """``retentive watch`` as an object: :meth:`run` until stopped (or, ``once``, until the source is done)."""

    def __init__(
        self,
        source: str,
        home: str,
        settings: WatchSettings,
        *,
        poll: float = 5.0,
        once: bool = False,
        settle: float = 1.0,
        reconfigure: bool = False,
        log: Callable[[str], None] = print,
    ) -> None:
        self.source = ChunkSource(source, settle=settle)
        self.home = prepare_home(home)
        self.chunks = ChunkUpdater(settings, self.home.location)
        self.ledger = Ledger.open(self.home.location, self.source.location, settings.record(), reconfigure)
        self.status = StatusFile(self.home.location, self.source.location)
        self.poll, self.once, self.log = poll, once, log
        self.stopped_by: int | None = None

    # ---------------------------------------------------------------- the loop
    def run(self) -> int | None:
        """Process chunks until stopped; ``None`` when ``once`` finished, else the signal it stopped on."""
        state = "finished"
        with self._signals(), tempfile.TemporaryDirectory(prefix="retentive-watch-") as scratch:
            try:
                self.status.set(state="starting")
                self._recover()
                self._loop(Path(scratch))
            except KeyboardInterrupt:
                self.stopped_by = self.stopped_by or signal.SIGINT
                state = f"stopped ({signal.Signals(self.stopped_by).name})"
                self._recover()  # the update in flight: committed (recorded now) or abandoned
            except BaseException as error:
                state = f"failed: {type(error).__name__}: {' '.join(str(error).split())[:500]}"
                raise
            finally:
                self.status.set(state=state, chunk=None)
        return self.stopped_by

    def _loop(self, scratch: Path) -> None:
        while True:
            todo = self._todo()
            if not todo:
                if self.once:
                    return
                if self.status.fields["state"] == "idle":
                    self.status.heartbeat()
                else:
                    self.status.set(state="idle")
                time.sleep(self.poll)
                continue
            for name in todo:
                self._process(name, scratch)

    def _todo(self) -> list[str]:
        """The chunks to take now, in order: one left pending by an earlier run first."""
        done = self.ledger.done()
        todo = [name for name in self.source.names() if name not in done]
        pending = self.ledger.pending
        if pending is not None and pending["name"] not in done:
            todo = [pending["name"], *(name for name in todo if name != pending["name"])]
        return todo

    def _recover(self) -> None:
        """A chunk left pending: recorded as done if its update committed, else taken again."""
        pending = self.ledger.pending
        if pending is None:
            return
        found = self.ledger.committed_outcome(self.home)
        if found is None:
            return
        outcome, version = found
        entry = {
            "name": pending["name"],
            "sha256": pending["sha256"],
            "outcome": outcome,
            "version": version.id,
            "update": self._update_index(version),
            "recovered": True,
        }
        self._finish(entry, " (committed before the restart)")

    # ---------------------------------------------------------------- one chunk
    def _process(self, name: str, scratch: Path) -> None:
        shown = self.source.where(name)
        self.status.set(state="updating", chunk=name)
        start = time.perf_counter()
        try:
            path, sha256 = self.source.fetch(name, scratch)
        except FileNotFoundError:
            return self._finish({"name": name, "sha256": None, "outcome": "quarantined", "error": "the file vanished"})
        try:
            entry = self._update(name, path, sha256, shown, start)
        except DataError as error:
            entry = {"name": name, "sha256": sha256, "outcome": "quarantined", "error": " ".join(str(error).split())}
        finally:
            if self.source.url:
                path.unlink(missing_ok=True)
        self._finish(entry)

    def _update(self, name: str, path: Path, sha256: str, shown: str, start: float) -> dict[str, Any]:
        from retentive.state.lineage import chunk_fingerprint

        chunk = read_checked(path, shown)
        updater = self.chunks.build(self.home.current() is not None)
        try:
            fits(updater, chunk, shown)
            base = updater.state_locations.expected_version
            based_on = None if base is None else {"version": base, "manifest_sha256": updater.state_version}
            self.ledger.begin(name, sha256, chunk_fingerprint(chunk)["sha256"], based_on)
            entry: dict[str, Any] = {"name": name, "sha256": sha256, "samples": len(chunk)}
            shift = self.chunks.shifted(updater, chunk)
            if shift is not None:
                entry["shift"] = shift
                if not shift["shift"]:
                    return {**entry, "outcome": "skipped", "version": base, "seconds": seconds_since(start)}
            outcome = self.chunks.update(updater, chunk)
        finally:
            updater.state_locations.close()
        version = self.home.current() if outcome == "promoted" else self.home.challenger()
        if outcome == "challenger" and self.home.current() is None:  # nothing serves yet: nothing is kept
            return {**entry, "outcome": "rejected", "version": None, "seconds": seconds_since(start)}
        assert version is not None
        update = self._update_index(version)
        return {**entry, "outcome": outcome, "version": version.id, "update": update, "seconds": seconds_since(start)}

    def _update_index(self, version: Any) -> int | None:
        from retentive.state.lineage import read_lineage

        return read_lineage(self.home.manifest(version)).update

    def _finish(self, entry: dict[str, Any], note: str = "") -> None:
        self.ledger.finish(entry)
        line = describe(entry) + note
        self.status.set(state="recorded", chunk=None, last=line)
        self.log(f"retentive watch: {line}")

    # ---------------------------------------------------------------- signals
    @contextmanager
    def _signals(self) -> Iterator[None]:
        """SIGTERM stops the service as Ctrl-C does (through the SIGINT handler in place, so an
        update takes it at a step boundary); SIGINT ignored by the launcher is taken back."""
        if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
            signal.signal(signal.SIGINT, signal.default_int_handler)

        def stop(signum: int, frame: FrameType | None) -> None:
            self.stopped_by = signal.SIGTERM
            handler = signal.getsignal(signal.SIGINT)
            if callable(handler):
                handler(signal.SIGINT, frame)
            else:
                raise KeyboardInterrupt

        previous = signal.signal(signal.SIGTERM, stop)
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, previous)
