"""An updater's state locations: local folders as they are, URLs and model homes through local stand-ins.

A local model home (:mod:`retentive.state.home`) is read and written exactly as a URL is, through
fsspec's local file system: below, "URL" means either.

An input URL is probed and fetched (verified) into a temporary folder when the updater is built;
an output URL is probed for writing and must not hold a committed state yet (unless it is also the
input: an in-place update, as Renate pipelines run with one ``state_url``). The update then saves
to a local stand-in with the local atomic writer, and :meth:`StateLocations.publish` uploads it as
the URL's new version and removes the stand-in, whether the upload succeeds or not. The commit is
conditional on the pointer read: an in-place update commits only if the URL still holds the
version it fetched, a fresh output URL only if it still holds no state; otherwise
:class:`~retentive.errors.StateConflictError` and the updated state is discarded. The temporary
folder goes with the updater (or the process). ``resume=True`` needs a local output folder: its
per-epoch checkpoints live beside it and would vanish with the temporary one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retentive.errors import StateConflictError, StateError
from retentive.state.interrupts import UpdateInterrupted
from retentive.state.remote.filesystem import is_url, local_path, open_url
from retentive.state.remote.layout import describe, fetch_committed, holds_state, publish_state
from retentive.state.remote.pointer import Pointer, read_pointer, same
from retentive.state.remote.probe import check_reachable

if TYPE_CHECKING:
    from retentive.state.home import ModelHome

Location = str | os.PathLike[str] | None


def _url(location: Location) -> str | None:
    """The location read and written through the versioned layout: a URL, or a local model home
    (:func:`retentive.state.home.is_home`); ``None`` for a single local state folder."""
    if location is None:
        return None
    if is_url(location):
        return os.fspath(location).rstrip("/")
    from retentive.state.home import is_home

    return str(local_path(location).absolute()) if is_home(location) else None


class StateLocations:
    """The local folders an updater reads and writes, standing in for URLs where it was given them."""

    def __init__(self, input_location: Location, output_location: Location, resume: bool = False) -> None:
        self.input_url, self.output_url = _url(input_location), _url(output_location)
        #: the pointer the output URL must still hold at the commit (in place: the one fetched)
        self.expected: Pointer | None = None
        self._fetched = False
        if self.output_url is not None and resume:
            raise ValueError(
                f"resume=True keeps per-epoch checkpoints beside a local output_state_folder; with {self.output_url!r} "
                "they would be lost with the process: write to a local folder and publish it with "
                "retentive.state.remote.publish_state, or drop resume"
            )
        if self.input_url is not None:  # both probed before anything is downloaded or trained
            check_reachable(self.input_url, write=False)
        if self.output_url is not None:
            check_reachable(self.output_url, write=True)
            self.check_output()
        self._workdir: Path | None = None
        if self.input_url is not None or self.output_url is not None:
            self._workdir = Path(tempfile.mkdtemp(prefix="retentive-state-"))
            self._cleanup = weakref.finalize(self, shutil.rmtree, self._workdir, True)
        self.input_folder = self._input(input_location)
        self.output_folder = (
            None
            if output_location is None
            else (
                self._workdir / "output" if self.output_url is not None else local_path(output_location)  # type: ignore[operator]
            )
        )

    def _input(self, location: Location) -> Path | None:
        if location is None:
            return None
        if self.input_url is None:
            return local_path(location)
        try:
            folder, pointer = fetch_committed(self.input_url, self._workdir / "input")  # type: ignore[operator]
        except BaseException:
            self.close()
            raise
        if self.input_url == self.output_url:
            self.expected, self._fetched = pointer, True
        return folder

    def check_output(self) -> None:
        """Refuse an output URL that already holds a committed state, unless it is the input URL;
        refuse an in-place URL whose committed version changed since it was fetched."""
        if self.output_url is None:
            return
        fs, root = open_url(self.output_url)
        if self.output_url == self.input_url:
            if self._fetched:
                current = read_pointer(fs, root, self.output_url)
                if not same(current, self.expected):
                    raise StateConflictError(
                        f"{self.output_url!r} changed since this updater read it: {describe(self.expected)} was read, "
                        f"but {describe(current)} is committed now; this update did not run (build the updater again)"
                    )
            return
        if holds_state(fs, root, self.output_url):
            raise StateError(
                f"output_state_folder {self.output_url!r} already holds a committed state; a state is never "
                "overwritten (pass the same URL as input_state_folder for an in-place update)"
            )

    @property
    def home(self) -> ModelHome | None:
        """The output as a model home (a URL or a local home); ``None`` for a single local folder."""
        from retentive.state.home import ModelHome

        return None if self.output_url is None else ModelHome(self.output_url)

    @property
    def expected_version(self) -> str | None:
        """The current version id the output's commit must still find (in place: the one fetched;
        a fresh output: ``None``, no current version)."""
        return None if self.expected is None else self.expected.version

    def publish(self, challenger_report: dict[str, Any] | None = None) -> None:
        """Upload the saved local stand-in to the output URL, then remove the stand-in.

        By default the upload becomes the current version. With ``challenger_report`` (a gate
        refused it) it is written as a new version and kept as the home's challenger with that
        report instead, while the current version, still the one expected, keeps serving
        (:meth:`~retentive.state.home.ModelHome.mark_challenger`).
        """
        if self.output_url is None:
            return
        assert self.output_folder is not None
        try:
            with self.naming_urls():
                if challenger_report is not None:
                    home = self.home
                    assert home is not None
                    candidate = home.write_candidate(self.output_folder)
                    home.mark_challenger(candidate, challenger_report, expect=self.expected_version)
                    return
                self.expected = publish_state(self.output_folder, self.output_url, expect=self.expected)
        except StateConflictError as error:
            raise StateConflictError(
                f"{error}; the updated state was discarded: update again from the URL's current state"
            ) from error
        except UpdateInterrupted as interrupt:  # a Ctrl-C during the commit, held until it was complete
            if interrupt.committed:
                self.expected = interrupt.result
            raise
        finally:
            shutil.rmtree(self.output_folder, ignore_errors=True)

    @contextlib.contextmanager
    def naming_urls(self) -> Iterator[None]:
        """Errors raised inside name the URLs, not the temporary folders standing in for them."""
        try:
            yield
        except StateError as error:
            text = str(error)
            for folder, url in ((self.input_folder, self.input_url), (self.output_folder, self.output_url)):
                if url is not None and folder is not None:
                    text = text.replace(str(folder), url)
            if text == str(error):
                raise
            raise type(error)(text) from error

    def close(self) -> None:
        """Remove the temporary folder now (it is removed with this object otherwise)."""
        if self._workdir is not None:
            self._cleanup()
