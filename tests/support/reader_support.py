"""Helpers shared by the dataset readers' tests (MNIST, CIFAR-10)."""

from __future__ import annotations

from pathlib import Path

import pytest


def search_nowhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point every place on a reader's search path into ``tmp_path``, where nothing is: the cache
    (``cache/``), ``$RETENTIVE_DATA`` (``data/``), and the shared data folders beside the
    checkout and beside the current folder."""
    monkeypatch.setenv("RETENTIVE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("RETENTIVE_DATA", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    fake = tmp_path / "pkg" / "retentive" / "data" / "downloads.py"
    monkeypatch.setattr("retentive.data.downloads.Path.resolve", lambda self: fake)
