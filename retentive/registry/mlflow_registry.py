"""The MLflow model registry: one run per update, one registered version per candidate, and the
aliases ``champion`` / ``challenger`` moved as the home decides.

MLflow is an optional extra (``pip install 'retentive[mlflow]'``) and is imported on the first
request, never by ``import retentive``. Every request runs with bounded retries and timeouts
(:func:`~retentive.registry.reachability.bounded_requests`) and any failure surfaces as one
:class:`~retentive.errors.RegistryError` naming the server and what was being done.

A candidate's state is not copied by default: a state at a URL is registered with that URL as the
version's source; a local state folder is registered from the run's ``state`` artifact, which holds
``state.json`` pointing at the folder, or the folder itself with ``copy_state=True``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse
from urllib.request import url2pathname

from retentive.errors import RegistryError
from retentive.registry import contents
from retentive.registry.base import CHALLENGER, CHAMPION, UpdateRecord
from retentive.registry.reachability import bounded_requests, is_http, local_store, probe

if TYPE_CHECKING:
    from mlflow import MlflowClient

#: MLflow's log_batch limits per request
_PARAMS_PER_BATCH = 100
_METRICS_PER_BATCH = 1000


class MlflowRegistry:
    """A :class:`~retentive.registry.Registry` backed by an MLflow tracking server and its model
    registry.

    Args:
        tracking_uri: the tracking server (``http://host:5000``) or any MLflow store URI
            (``sqlite:///path.db``); None: the local store ``./mlruns`` (``mlruns/mlflow.db`` and
            ``mlruns/artifacts``, resolved against the working directory now).
        model_name: the registered model whose versions are the candidates.
        experiment: the experiment that holds the update runs (default: ``model_name``).
        copy_state: upload a local candidate's state folder into its run, instead of a pointer.
        timeout: seconds to wait for one answer of the server (the check and each request).
    """

    def __init__(
        self,
        tracking_uri: str | None = None,
        model_name: str = "retentive",
        experiment: str | None = None,
        copy_state: bool = False,
        timeout: float = 10.0,
    ) -> None:
        if not model_name or not model_name.strip():
            raise ValueError("model_name must be a non-empty name for the registered model")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive seconds, got {timeout}")
        self.artifact_location: str | None = None
        if tracking_uri is None:
            tracking_uri, self.artifact_location = local_store()
        self.tracking_uri = tracking_uri
        self.model_name = model_name
        self.experiment = experiment or model_name
        self.copy_state = copy_state
        self.timeout = timeout
        self._client_: MlflowClient | None = None

    def __repr__(self) -> str:
        return f"MlflowRegistry({self.tracking_uri!r}, model_name={self.model_name!r})"

    # -- the Registry protocol ------------------------------------------------------------------

    def check(self) -> None:
        if importlib.util.find_spec("mlflow") is None:
            raise RegistryError(
                f"the registry {self.tracking_uri!r} needs MLflow, which is not installed: "
                "pip install 'retentive[mlflow]'"
            )
        if is_http(self.tracking_uri):
            probe(self.tracking_uri, self.timeout)
            return
        if self.artifact_location is not None:
            Path(url2pathname(urlparse(self.artifact_location).path)).mkdir(parents=True, exist_ok=True)
        with self._request("open the store"):
            self._client().search_registered_models(max_results=1)

    def record_update(self, record: UpdateRecord) -> str:
        with self._request(f"record the update of candidate {record.candidate!r}"):
            client = self._client()
            run = client.create_run(self._experiment_id(), run_name=record.candidate, tags=contents.tags(record))
            run_id: str = run.info.run_id
            try:
                self._log(client, run_id, record)
            except BaseException:
                with contextlib.suppress(Exception):  # the first error is the one to report
                    client.set_terminated(run_id, status="FAILED")
                raise
            client.set_terminated(run_id)
            return run_id

    def register_candidate(self, record: UpdateRecord, run_id: str) -> str:
        with self._request(f"register candidate {record.candidate!r}"):
            client = self._client()
            self._ensure_model(client)
            from retentive.state.remote.filesystem import is_url  # the state package imports torch

            source = record.state_url if is_url(record.state_url) else f"runs:/{run_id}/state"
            version = client.create_model_version(
                self.model_name, source, run_id=run_id, tags=contents.tags(record), await_creation_for=0
            )
            return str(version.version)

    def set_champion(self, version: str) -> None:
        with self._request(f"make version {version} the {CHAMPION}"):
            client = self._client()
            client.set_registered_model_alias(self.model_name, CHAMPION, version)
            if self._aliases(client).get(CHALLENGER) == str(version):
                client.delete_registered_model_alias(self.model_name, CHALLENGER)

    def set_challenger(self, version: str) -> None:
        with self._request(f"make version {version} the {CHALLENGER}"):
            self._client().set_registered_model_alias(self.model_name, CHALLENGER, version)

    def aliases(self) -> dict[str, str]:
        with self._request("read the aliases"):
            return self._aliases(self._client())

    def version_of(self, candidate: str) -> str | None:
        quoted = candidate.replace("\\", "\\\\").replace("'", "\\'")
        query = f"name = '{self._quoted_name()}' and tag.`{contents.CANDIDATE_TAG}` = '{quoted}'"
        with self._request(f"find candidate {candidate!r}"):
            found = self._client().search_model_versions(query)
        return max((str(v.version) for v in found), key=int, default=None)

    def state_url(self, alias: str = CHAMPION) -> str | None:
        """Where the state of the version under ``alias`` lies (what a serving process loads with
        :func:`retentive.load_model`), or None if no version has that alias."""
        version = self.aliases().get(alias)
        if version is None:
            return None
        with self._request(f"read version {version}"):
            found = self._client().get_model_version(self.model_name, version)
        return found.tags.get(contents.STATE_TAG)

    # -- MLflow ----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _request(self, what: str) -> Iterator[None]:
        """Bounded requests; any failure becomes one RegistryError naming the server and ``what``."""
        with bounded_requests(self.timeout):
            try:
                yield
            except RegistryError:
                raise
            except Exception as error:  # noqa: BLE001 - MLflow, requests and SQLAlchemy errors alike
                first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
                raise RegistryError(f"MLflow registry {self.tracking_uri!r}: could not {what}: {first_line}") from error

    def _client(self) -> MlflowClient:
        if self._client_ is None:
            try:
                from mlflow import MlflowClient
            except ImportError as error:
                raise RegistryError(f"MLflow is not installed ({error}): pip install 'retentive[mlflow]'") from None
            self._client_ = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        return self._client_

    def _quoted_name(self) -> str:
        return self.model_name.replace("\\", "\\\\").replace("'", "\\'")

    def _experiment_id(self) -> str:
        client = self._client()
        found = client.get_experiment_by_name(self.experiment)
        if found is not None:
            return str(found.experiment_id)
        return str(client.create_experiment(self.experiment, artifact_location=self.artifact_location))

    def _ensure_model(self, client: MlflowClient) -> None:
        from mlflow.exceptions import MlflowException

        try:
            client.get_registered_model(self.model_name)
        except MlflowException as error:
            if error.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            with contextlib.suppress(MlflowException):  # a racing writer may have created it
                client.create_registered_model(
                    self.model_name, description="Candidates of a retentive model home, one version per update."
                )

    def _aliases(self, client: MlflowClient) -> dict[str, str]:
        from mlflow.exceptions import MlflowException

        try:
            model = client.get_registered_model(self.model_name)
        except MlflowException as error:
            if error.error_code == "RESOURCE_DOES_NOT_EXIST":
                return {}
            raise
        return {alias: str(version) for alias, version in dict(model.aliases).items()}

    def _log(self, client: MlflowClient, run_id: str, record: UpdateRecord) -> None:
        """The record's parameters and metrics (batched), its documents and its state (or pointer)."""
        from mlflow.entities import Metric, Param

        params = [Param(k, v) for k, v in contents.flatten(record.hyperparameters).items()]
        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, step) for k, v, step in contents.metric_points(record)]
        for start in range(0, len(params), _PARAMS_PER_BATCH):
            client.log_batch(run_id, params=params[start : start + _PARAMS_PER_BATCH])
        for start in range(0, len(metrics), _METRICS_PER_BATCH):
            client.log_batch(run_id, metrics=metrics[start : start + _METRICS_PER_BATCH])
        with tempfile.TemporaryDirectory(prefix="retentive-run-") as folder:
            for name, document in contents.documents(record).items():
                path = Path(folder, name)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(document, indent=2, default=str))
            client.log_artifacts(run_id, folder)
        from retentive.state.remote.filesystem import is_url, local_path  # the state package imports torch

        if self.copy_state and not is_url(record.state_url):
            client.log_artifacts(run_id, str(local_path(record.state_url)), "state")
