"""The config's ``gate:`` section: the criteria a candidate must pass, and how much of each chunk
to hold out for them.

    gate:
      max_drop: 2.0                 # accuracy points on any earlier chunk
      min_new_accuracy: 0.9         # on the new chunk's held-out data
      max_negative_flip_rate: 0.05  # against the current model, all held-out chunks pooled
      custom: mypackage.rules:only_if_better   # or a list of module:function
      holdout: 0.1                  # held back from each chunk and kept in the model home

``retentive update --gate NAME=VALUE`` sets or overrides one entry, ``--gate-data`` names the
held-out data instead of ``holdout``. Checked when the config is read, before anything trains.
"""

from __future__ import annotations

from typing import Any

from retentive.cli.config.hints import describe_value
from retentive.cli.config.schema import Source

#: the entry that is not a criterion: the share of each chunk held out
HOLDOUT = "holdout"


def parse_gate(value: Any, source: Source, key: str = "gate") -> dict[str, Any]:
    """The gate section as a plain mapping, every criterion known and every limit in range."""
    from retentive.gates.criteria import NAMED, criteria_from
    from retentive.gates.errors import GateConfigError

    if value is None:
        return {}
    if not isinstance(value, dict):
        raise source.error(key, f"expected a mapping of gate criteria and holdout, got {describe_value(value)}")
    known = sorted([*NAMED, HOLDOUT])
    for name, limit in value.items():
        where = f"{key}.{name}" if key else str(name)
        if name not in known:
            raise source.error(where, f"unknown gate criterion {name!r}; known: {', '.join(known)}")
        try:
            if name == HOLDOUT:
                if not isinstance(limit, (int, float)) or isinstance(limit, bool) or not 0 < limit < 1:
                    raise GateConfigError(f"holdout must be a share of the chunk in (0, 1), got {limit!r}")
            else:
                criteria_from({name: limit})
        except GateConfigError as error:
            raise source.error(where, str(error)) from None
    return dict(value)
