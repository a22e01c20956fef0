"""The state folder, one door: what an update reads and writes between chunks.

One concept per module: :mod:`~retentive.state.format` (format v1: manifest, payloads, atomic
write, verified read), :mod:`~retentive.state.staging` (staging folders beside the target),
:mod:`~retentive.state.locking` (the output lock), :mod:`~retentive.state.resume` (per-epoch
checkpoints of an interrupted update), :mod:`~retentive.state.housekeeping` (leftovers),
:mod:`~retentive.state.inspection` (``retentive inspect``), :mod:`~retentive.state.loading`
(``load_model``), :mod:`~retentive.state.remote` (state at URLs: ``s3://``, any fsspec
filesystem), :mod:`~retentive.state.home` (a model home: versions plus a pointer, local and remote
alike; promote, challenger, rollback), :mod:`~retentive.state.lineage` (what every manifest
records of how its state was made) and :mod:`~retentive.state.ancestry` (``inspect --history``,
``--lineage``). Importing this package imports only the format (no Lightning).
"""

from retentive.state.format import (
    FORMAT_VERSION,
    KIND_CHECKPOINT,
    KIND_STATE,
    MANIFEST,
    PAYLOADS,
    State,
    check_output_folder,
    load_state,
    read_manifest,
    save_state,
)

__all__ = [
    "FORMAT_VERSION",
    "KIND_CHECKPOINT",
    "KIND_STATE",
    "MANIFEST",
    "PAYLOADS",
    "State",
    "check_output_folder",
    "load_state",
    "read_manifest",
    "save_state",
]
