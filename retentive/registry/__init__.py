"""The model registry: every update a tracked run, every candidate a registered version, and the
aliases ``champion`` / ``challenger`` mirroring what the gates and the model home decided.

The interface (stable: the gates call it on each decision; a promotion or a rollback moves the
aliases with ``set_champion``):

    from retentive.registry import MlflowRegistry, UpdateRecord, open_registry, record_decision

    registry = MlflowRegistry(tracking_uri=None, model_name="digits")  # None: the local ./mlruns store
    registry = open_registry("http://127.0.0.1:5000", model_name="digits")  # what --registry URI gives
    registry.check()                 # before training: RegistryError if unreachable or MLflow is missing
    record = UpdateRecord(candidate="v0004", state_url="home/versions/v0004", promoted=False,
                          parent="v0003", hyperparameters={...}, accuracy_matrix=[[...], ...],
                          forgetting=0.02, flip_rates={"nfr": 0.01}, gate_report={...}, lineage={...})
    landed = record_decision(registry, record)  # run + version + alias: champion if promoted, else challenger
    # or step by step:
    run_id = registry.record_update(record)                  # one run: params, metrics, JSON documents
    version = registry.register_candidate(record, run_id)    # a registered model version ("1", "2", ...)
    registry.set_champion(version)                           # promote / rollback (clears a challenger on it)
    registry.set_challenger(version)                         # a rejected candidate, kept to look at
    registry.aliases()                                       # {"champion": "3", "challenger": "4"}
    registry.version_of("v0003")                             # the home's id -> the registry's version

:class:`Registry` is a Protocol: another registry (a database, a web service) plugs in by
implementing its seven methods. One update's run holds the hyperparameters as parameters, each
chunk's accuracy as a series over updates (``accuracy/chunk_<j>``), ``average_accuracy``,
``forgetting``, ``flips/<nfr|pfr|nfi|pfi>``, and ``accuracy_matrix.json``, ``gate_report.json``,
``lineage.json`` and ``state/`` (a pointer to the state, or the state itself) as artifacts; the
tags ``retentive.candidate``, ``retentive.parent``, ``retentive.state``, ``retentive.decision``
and ``retentive.gate`` are on the run and on its version.

MLflow is an optional extra (``pip install 'retentive[mlflow]'``); importing this package does not
import it. TensorBoard stays the updaters' training logger: the registry records decisions, not
steps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from retentive.errors import RegistryError
from retentive.registry.base import (
    CHALLENGER,
    CHAMPION,
    RegisteredUpdate,
    Registry,
    UpdateRecord,
    record_decision,
)

if TYPE_CHECKING:
    from retentive.registry.mlflow_registry import MlflowRegistry

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "MlflowRegistry",
    "RegisteredUpdate",
    "Registry",
    "RegistryError",
    "UpdateRecord",
    "open_registry",
    "record_decision",
]

#: what ``--registry`` accepts for the local store (``./mlruns``) instead of a tracking URI
LOCAL = "local"


def open_registry(uri: str | None, model_name: str = "retentive", **options: Any) -> Registry:
    """The registry a ``--registry URI`` names: an MLflow tracking URI (``http://host:5000``,
    ``sqlite:///path.db``), or ``local`` / None for the local store ``./mlruns``. ``options`` go to
    :class:`MlflowRegistry` (``experiment``, ``copy_state``, ``timeout``)."""
    from retentive.registry.mlflow_registry import MlflowRegistry

    if uri is not None and not uri.strip():
        raise ValueError("--registry needs a tracking URI (http://host:5000, sqlite:///path.db) or 'local'")
    return MlflowRegistry(None if uri in (None, LOCAL) else uri, model_name=model_name, **options)


def __getattr__(name: str) -> Any:
    if name == "MlflowRegistry":  # imports no MLflow either: the client is made on first use
        from retentive.registry.mlflow_registry import MlflowRegistry

        return MlflowRegistry
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
