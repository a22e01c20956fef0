"""Config spaces: Syne Tune's (a dict of constants and domains, Renate's form) and the YAML file
``retentive tune --space`` reads.

A space of constants only is one training job; a space with a domain is a search.

YAML form, one key per searched value (a dotted key as ``--set`` takes it), e.g.::

    optimizer.init_args.lr: {loguniform: [0.001, 0.3]}
    updater.init_args.alpha: {choice: [0.1, 0.5, 1.0]}
    updater.init_args.batch_size: 32          # a constant
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from retentive.errors import RetentiveError

#: YAML domain name -> (syne_tune.config_space function, how its arguments are given)
DOMAINS = ("choice", "uniform", "loguniform", "randint", "lograndint")


class SpaceError(RetentiveError, ValueError):
    """A config space is malformed."""


def hpo_module() -> Any:
    """``syne_tune``, or an ImportError naming the extra that installs it."""
    try:
        import syne_tune
        import syne_tune.config_space  # noqa: F401
    except ImportError as error:
        raise ImportError(
            "hyperparameter search needs Syne Tune: install retentive's 'hpo' extra "
            "(pip install 'retentive[hpo]', or bash scripts/setup.sh dev)"
        ) from error
    return syne_tune


def is_domain(value: Any) -> bool:
    """Whether ``value`` is a Syne Tune domain (checked without importing Syne Tune for constants)."""
    module = type(value).__module__
    return module.startswith("syne_tune.") and hasattr(value, "sample")


def is_search(space: Mapping[str, Any]) -> bool:
    """Whether ``space`` holds at least one domain (a search) rather than constants only (one job)."""
    return any(is_domain(value) for value in space.values())


def constants(space: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in space.items() if not is_domain(value)}


def first_values(space: Mapping[str, Any]) -> dict[str, Any]:
    """One valid value per key (each domain's lower end or first choice): for checking a space
    before any trial runs."""
    values = {}
    for key, value in space.items():
        if is_domain(value):
            categories = getattr(value, "categories", None)
            values[key] = categories[0] if categories else value.lower
        else:
            values[key] = value
    return values


def _domain(key: str, spec: Mapping[str, Any], source: str) -> Any:
    if len(spec) != 1 or next(iter(spec)) not in DOMAINS:
        raise SpaceError(
            f"{source}: {key}: expected one of {{{', '.join(f'{d}: ...' for d in DOMAINS)}}}, got {dict(spec)!r}"
        )
    kind, arguments = next(iter(spec.items()))
    config_space = hpo_module().config_space
    if kind == "choice":
        if not isinstance(arguments, list) or not arguments:
            raise SpaceError(f"{source}: {key}: choice needs a non-empty list of values, got {arguments!r}")
        return config_space.choice(arguments)
    if (
        not isinstance(arguments, list)
        or len(arguments) != 2
        or not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in arguments)
    ):
        raise SpaceError(f"{source}: {key}: {kind} needs [lower, upper] numbers, got {arguments!r}")
    lower, upper = arguments
    if not lower < upper or (kind.startswith("log") and lower <= 0):
        raise SpaceError(
            f"{source}: {key}: {kind} needs lower < upper{' and lower > 0' if kind.startswith('log') else ''}, "
            f"got {arguments!r}"
        )
    if kind in ("randint", "lograndint") and not all(isinstance(a, int) for a in arguments):
        raise SpaceError(f"{source}: {key}: {kind} needs integer bounds, got {arguments!r}")
    return getattr(config_space, kind)(lower, upper)


def read_space(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A YAML space file -> a Syne Tune config space (domains for the searched keys).

    Read as update configs are (:func:`~retentive.cli.config.parsing.read_yaml_file`): ``1e-3``
    is a float and a duplicate key is an error.
    """
    from retentive.cli.config import ConfigError
    from retentive.cli.config.parsing import read_yaml_file

    file = Path(path)
    try:
        raw = read_yaml_file(file, "search space")
    except ConfigError as error:
        raise SpaceError(str(error)) from error
    if not isinstance(raw, dict) or not raw:
        raise SpaceError(f"{file}: expected a mapping of dotted keys to domains or constants, got {raw!r}")
    space = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not all(part.strip() for part in key.split(".")):
            raise SpaceError(f"{file}: {key!r} is not a dotted key such as optimizer.init_args.lr")
        space[key] = _domain(key, value, str(file)) if isinstance(value, dict) else value
    return space
