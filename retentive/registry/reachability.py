"""Where an MLflow registry lives, and a check that it answers, in seconds and before any training.

MLflow's HTTP client retries a failed request seven times with exponential backoff and waits two
minutes for an answer (minutes in all for a server that is down); a pipeline wants one clear error
instead. :func:`bounded_requests` caps the retries and the wait while retentive talks to the
server, unless the user set MLflow's own variables. :func:`probe` asks a tracking server's registry
API with plain ``urllib`` (no MLflow import, which alone takes seconds).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from retentive.errors import RegistryError

#: the local store when no tracking URI is given: MLflow's SQLite backend and its artifacts, side by
#: side in ``./mlruns`` of the working directory (resolved once, when the registry is made)
LOCAL_FOLDER = "mlruns"
LOCAL_DATABASE = "mlflow.db"
LOCAL_ARTIFACTS = "artifacts"

#: an endpoint of the registry API every MLflow tracking server answers (a light, read-only query)
_PROBE_PATH = "/api/2.0/mlflow/registered-models/search?max_results=1"


def local_store(folder: str | os.PathLike[str] = LOCAL_FOLDER) -> tuple[str, str]:
    """The tracking URI and artifact location of the embedded local store under ``folder``."""
    root = Path(folder).resolve()
    return f"sqlite:///{root / LOCAL_DATABASE}", (root / LOCAL_ARTIFACTS).as_uri()


def is_http(uri: str) -> bool:
    return uri.lower().startswith(("http://", "https://"))


@contextlib.contextmanager
def bounded_requests(timeout: float, retries: int = 1) -> Iterator[None]:
    """While inside: MLflow's HTTP requests wait at most ``timeout`` seconds and retry ``retries``
    times, its progress bars and "View run" lines stay quiet. Variables the user set are kept."""
    settings = {
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(max(1, round(timeout))),
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(retries),
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    }
    added = [name for name in settings if name not in os.environ]
    os.environ.update({name: settings[name] for name in added})
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def _credentials() -> dict[str, str]:
    """The headers MLflow's client would send, from its documented variables."""
    if token := os.environ.get("MLFLOW_TRACKING_TOKEN"):
        return {"Authorization": f"Bearer {token}"}
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if user and password:
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}
    return {}


def probe(uri: str, timeout: float) -> None:
    """Raise :class:`RegistryError` unless the tracking server at ``uri`` answers its registry API
    within ``timeout`` seconds with MLflow's JSON."""
    request = urllib.request.Request(uri.rstrip("/") + _PROBE_PATH, headers=_credentials())
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310 - http(s) only, checked by the caller
            json.loads(answer.read() or b"{}")
    except urllib.error.HTTPError as error:
        reason = {
            401: "it refused the credentials (MLFLOW_TRACKING_TOKEN or MLFLOW_TRACKING_USERNAME/PASSWORD)",
            403: "it refused the credentials (MLFLOW_TRACKING_TOKEN or MLFLOW_TRACKING_USERNAME/PASSWORD)",
            404: "it has no model registry API there; is it an MLflow tracking server?",
        }.get(error.code, f"it answered HTTP {error.code} {error.reason}")
        raise RegistryError(f"MLflow registry {uri!r}: {reason}") from None
    except (urllib.error.URLError, OSError) as error:
        cause = error.reason if isinstance(error, urllib.error.URLError) else error
        raise RegistryError(
            f"MLflow registry {uri!r} is unreachable ({cause}; waited at most {timeout:g} s); "
            "start the tracking server or pass another --registry"
        ) from None
    except ValueError:
        raise RegistryError(
            f"MLflow registry {uri!r}: the answer is not MLflow's JSON; is it a tracking server?"
        ) from None
