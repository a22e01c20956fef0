"""The command line's registry options, for the commands that decide what serves (``update``,
``promote``, ``rollback``): ``--registry URI`` and ``--registry-model NAME``. Building the parser
imports neither MLflow nor torch, so ``retentive --help`` stays quick."""

from __future__ import annotations

import argparse
import os
import re

from retentive.registry.base import Registry

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def add_registry_options(parser: argparse.ArgumentParser) -> None:
    """``--registry URI`` (default: no registry) and ``--registry-model NAME``."""
    parser.add_argument(
        "--registry",
        default=None,
        metavar="URI",
        help="mirror the decision into an MLflow model registry: a tracking URI (http://host:5000, "
        "sqlite:///path.db) or 'local' (./mlruns); needs pip install 'retentive[mlflow]'",
    )
    parser.add_argument(
        "--registry-model",
        default=None,
        metavar="NAME",
        help="the registered model's name [default: the model home's folder name]",
    )


def default_model_name(home: str | os.PathLike[str]) -> str:
    """A registered model name from a home's location: its last path part (``s3://b/digits`` and
    ``homes/digits/`` are both ``digits``), with characters MLflow's UI would mangle replaced."""
    text = os.fspath(home).rstrip("/")
    name = _UNSAFE.sub("-", text.rsplit("/", 1)[-1].split("://")[-1]).strip("-")
    return name or "retentive"


def registry_from_options(args: argparse.Namespace, home: str | os.PathLike[str]) -> Registry | None:
    """The registry the options name (None without ``--registry``), for the model home ``home``."""
    if args.registry is None:
        return None
    from retentive.registry import open_registry

    return open_registry(args.registry, model_name=args.registry_model or default_model_name(home))
