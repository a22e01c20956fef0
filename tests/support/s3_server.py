"""A local S3-compatible server for the state-URL tests: moto's server on 127.0.0.1, with IAM
checks on, so that wrong credentials are refused as AWS refuses them.

The server runs in its own process (this file run as a script: moto's server app) on a free port.
Its first three requests are let through unauthenticated to create a user, its access key and an
allow-all S3 policy; from then on every request must be signed with that key.

The server handles one request at a time. S3 applies a conditional PUT (``If-Match``,
``If-None-Match``) atomically; moto checks the condition and then stores the object in two steps,
and ``python -m moto.server`` runs requests on parallel threads, so two racing conditional PUTs
could both pass there. Serialising the requests gives the server S3's atomicity, which the
compare-and-swap tests of the remote state rely on.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from servers import free_port, wait_until_answers

REGION = "us-east-1"
_POLICY = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}'


@dataclass
class S3Server:
    endpoint: str
    key: str
    secret: str
    bucket: str

    def env(self, **changes: str) -> dict[str, str]:
        """The environment a client of this server needs (for a subprocess), with ``changes``."""
        base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        return {
            **base,
            "AWS_ACCESS_KEY_ID": self.key,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_DEFAULT_REGION": REGION,
            **changes,
        }

    def filesystem(self):
        import s3fs

        return s3fs.S3FileSystem(key=self.key, secret=self.secret, endpoint_url=self.endpoint, skip_instance_cache=True)


@contextlib.contextmanager
def s3_server() -> Iterator[S3Server]:
    """Start the server with its user, key and an empty bucket; yield it; kill it at the end."""
    import boto3

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "INITIAL_NO_AUTH_ACTION_COUNT": "3",
        "AWS_ACCESS_KEY_ID": "setup",
        "AWS_SECRET_ACCESS_KEY": "setup",
    }
    process = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "127.0.0.1", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_answers(f"{endpoint}/moto-api/", process, "moto's server", timeout=60)
        iam = boto3.client(
            "iam", endpoint_url=endpoint, region_name=REGION, aws_access_key_id="setup", aws_secret_access_key="setup"
        )
        iam.create_user(UserName="retentive")
        key = iam.create_access_key(UserName="retentive")["AccessKey"]
        iam.put_user_policy(UserName="retentive", PolicyName="s3", PolicyDocument=_POLICY)
        server = S3Server(endpoint, key["AccessKeyId"], key["SecretAccessKey"], "states")
        server.filesystem().mkdir(server.bucket)
        yield server
    finally:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    """The server, with its user's credentials (and AWS_ENDPOINT_URL) in the environment."""
    with s3_server() as server, pytest.MonkeyPatch.context() as patch:
        for name in [n for n in os.environ if n.startswith("AWS_")]:
            patch.delenv(name)
        for name, value in server.env().items():
            if name.startswith("AWS_"):
                patch.setenv(name, value)
        forget_s3_clients()
        yield server
    forget_s3_clients()


def forget_s3_clients() -> None:
    """Drop fsspec's cached S3 filesystems: one is built from the environment it first saw (the
    endpoint and credentials of another test's server) and would be reused for a later one."""
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()


def _serve(host: str, port: int) -> None:
    """moto's server app (as ``python -m moto.server`` builds it), one request at a time."""
    from moto.moto_server.threaded_moto_server import MotoRequestHandler
    from moto.server import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import run_simple

    os.environ.setdefault("MOTO_PORT", str(port))
    app, lock = DomainDispatcherApplication(create_backend_app), threading.Lock()

    def serialised(environ, start_response):
        with lock:  # the whole request, its body read and its response built
            return list(app(environ, start_response))

    run_simple(host, port, serialised, threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    _serve(sys.argv[1], int(sys.argv[2]))
