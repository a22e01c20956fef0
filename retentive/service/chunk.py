"""One chunk, start to end: read it, build the updater on the home's current version, ask the
shift detector (optional), update with the gate (optional), and say what became of it.

The updater is built afresh for every chunk from the YAML config, exactly as ``retentive update
--config CONFIG --input-state HOME --output-state HOME`` builds it: each chunk starts from the
version committed in the home, so a service that was killed and restarted computes what one that
ran through computes (the random streams are keyed by the seed and the update's index).
"""

from __future__ import annotations

import argparse
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retentive.errors import DataError

#: what a watch service is configured with; recorded (as :meth:`WatchSettings.record`) in the ledger
SHIFT_DETECTORS = ("mmd", "ks", "labels")


@dataclass(frozen=True)
class WatchSettings:
    """How every chunk is updated: the ``retentive update`` config, ``--set`` overrides, gate
    criteria (``NAME=VALUE``, e.g. ``max_drop=2``, ``holdout=0.2``) and the optional shift test."""

    config: Path
    overrides: tuple[str, ...] = ()
    gate: tuple[str, ...] = ()
    shift: str | None = None
    shift_alpha: float = 0.05
    shift_seed: int = 0

    def record(self) -> dict[str, Any]:
        """What decides the versions a chunk gives (the config's bytes, not its path)."""
        try:
            config_sha256 = hashlib.sha256(self.config.read_bytes()).hexdigest()
        except OSError as error:
            raise DataError(f"--config {str(self.config)!r} cannot be read: {error.strerror or error}") from error
        shift = (
            None if self.shift is None else {"detector": self.shift, "alpha": self.shift_alpha, "seed": self.shift_seed}
        )
        return {
            "config_sha256": config_sha256,
            "overrides": list(self.overrides),
            "gate": list(self.gate),
            "shift": shift,
        }


class ChunkUpdater:
    """Builds what every chunk needs once (config, gate), then takes chunks one at a time."""

    def __init__(self, settings: WatchSettings, home: str) -> None:
        from retentive.cli.config import load_config
        from retentive.cli.gating import build_gate

        if settings.shift is not None and settings.shift not in SHIFT_DETECTORS:
            raise ValueError(f"shift must be one of {list(SHIFT_DETECTORS)} or None, got {settings.shift!r}")
        self.settings, self.home = settings, home
        self.config = load_config(settings.config, list(settings.overrides))
        self.gate = build_gate(argparse.Namespace(gate=list(settings.gate), gate_data=[]), self.config)

    def build(self, has_current: bool) -> Any:
        """The updater on the home's current version (none yet: a new model), writing the home."""
        from retentive.cli.config import build_updater

        inputs = self.home if has_current else None
        return build_updater(self.config, input_state_folder=inputs, output_state_folder=self.home, resume=False)

    def shifted(self, updater: Any, chunk: Any) -> dict[str, Any] | None:
        """The shift detector's verdict on ``chunk`` against the current version's memory, or ``None``
        when no test is configured or there is nothing to compare with (no version, empty memory)."""
        if self.settings.shift is None or updater.state_locations.input_folder is None or not len(updater.memory):
            return None
        from retentive.shift import detect_shift

        result = detect_shift(
            chunk,
            state_folder=updater.state_locations.input_folder,
            detector=self.settings.shift,
            model=updater.model if self.settings.shift != "labels" else None,
            alpha=self.settings.shift_alpha,
            seed=self.settings.shift_seed,
        )
        return result.to_dict()

    def update(self, updater: Any, chunk: Any) -> str:
        """Train, gate and commit: ``"promoted"``, or ``"challenger"`` when the gate refused the candidate."""
        from retentive.gates import GateRejected

        try:
            updater.update(chunk, gate=self.gate)
        except GateRejected:
            return "challenger"
        return "promoted"


def read_checked(path: Path, shown: str) -> Any:
    """The chunk in ``path``, or a :class:`DataError` naming ``shown``. The file is untrusted data:
    whatever its reader raises means the file is bad, and a service must quarantine it and go on
    rather than stop on it at every restart."""
    from retentive.data.files import read_chunk_file

    try:
        return read_chunk_file(path)
    except DataError as error:
        raise DataError(str(error).replace(str(path), shown)) from error
    except Exception as error:
        raise DataError(f"{shown}: cannot be read as a chunk ({type(error).__name__}: {error})") from error


def fits(updater: Any, chunk: Any, shown: str) -> None:
    """The model takes the chunk's inputs (else a DataError naming the chunk)."""
    from retentive.cli.update import check_fits

    check_fits(updater.model, chunk, Path(shown))


def seconds_since(start: float) -> float:
    return round(time.perf_counter() - start, 3)
