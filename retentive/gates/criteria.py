"""What a candidate must satisfy to be promoted: criteria a team states, each a limit on one measure.

Every criterion reads the :class:`~retentive.gates.measures.Measures` of one gate evaluation and
returns a :class:`Verdict` carrying the measured value next to its limit, so the report says not
only *that* a gate failed but by how much. Limits are stated in the units people quote: drops in
accuracy points, accuracies and flip rates as fractions in [0, 1].
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from retentive.gates.errors import GateConfigError
from retentive.gates.measures import Measures


@dataclass(frozen=True)
class Verdict:
    """One criterion's outcome: its name, limit, the measured value (``None``: nothing to measure,
    e.g. no earlier chunk on the first update) and whether it passed."""

    criterion: str
    limit: float | None
    value: float | None
    passed: bool
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "criterion": self.criterion,
            "limit": self.limit,
            "value": self.value,
            "passed": self.passed,
            "detail": self.detail,
        }


@runtime_checkable
class Criterion(Protocol):
    """Anything with a ``name`` and ``check(measures) -> Verdict`` is a criterion."""

    @property
    def name(self) -> str: ...

    def check(self, measures: Measures) -> Verdict: ...


def _limit(name: str, value: Any, high: float) -> float:
    try:
        limit = float(value)
    except (TypeError, ValueError):
        raise GateConfigError(f"gate criterion {name!r} needs a number, got {value!r}") from None
    if not (math.isfinite(limit) and 0.0 <= limit <= high):
        raise GateConfigError(f"gate criterion {name!r} must lie in [0, {high:g}], got {value!r}")
    return limit


@dataclass(frozen=True)
class MaxDrop:
    """The largest drop allowed on any earlier chunk, in accuracy points (current - candidate)."""

    points: float
    name: str = "max_drop"

    def __post_init__(self) -> None:
        object.__setattr__(self, "points", _limit(self.name, self.points, 100.0))

    def check(self, measures: Measures) -> Verdict:
        drops = measures.drops_in_points()
        if not drops:
            return Verdict(self.name, self.points, None, True, "no earlier chunk to compare")
        chunk, worst = max(drops.items(), key=lambda item: item[1])
        return Verdict(self.name, self.points, worst, worst <= self.points, f"largest drop on chunk {chunk}")


@dataclass(frozen=True)
class MinNewAccuracy:
    """The smallest accuracy the candidate must reach on the new chunk's held-out data."""

    accuracy: float
    name: str = "min_new_accuracy"

    def __post_init__(self) -> None:
        object.__setattr__(self, "accuracy", _limit(self.name, self.accuracy, 1.0))

    def check(self, measures: Measures) -> Verdict:
        value = measures.new_chunk.candidate
        return Verdict(self.name, self.accuracy, value, value >= self.accuracy, f"chunk {measures.new_chunk.chunk}")


@dataclass(frozen=True)
class MaxNegativeFlipRate:
    """The largest share of held-out samples the current model gets right and the candidate wrong."""

    rate: float
    name: str = "max_negative_flip_rate"

    def __post_init__(self) -> None:
        object.__setattr__(self, "rate", _limit(self.name, self.rate, 1.0))

    def check(self, measures: Measures) -> Verdict:
        value = measures.negative_flip_rate
        if value is None:
            return Verdict(self.name, self.rate, None, True, "no current model to compare")
        return Verdict(self.name, self.rate, value, value <= self.rate, "all held-out chunks pooled")


@dataclass(frozen=True)
class Custom:
    """A team's own rule: ``function(measures)`` returns True to pass (or a number: truthy passes)."""

    function: Callable[[Measures], Any]
    name: str = ""

    def __post_init__(self) -> None:
        if not callable(self.function):
            raise GateConfigError(f"a custom gate criterion must be callable, got {self.function!r}")
        if not self.name:
            object.__setattr__(self, "name", getattr(self.function, "__name__", "custom"))

    def check(self, measures: Measures) -> Verdict:
        outcome = self.function(measures)
        value = float(outcome) if isinstance(outcome, (int, float)) else None
        return Verdict(self.name, None, value, bool(outcome), "custom")


def import_callable(path: str) -> Callable[[Measures], Any]:
    """``package.module:function`` (or ``package.module.function``) as the function it names."""
    module_name, _, attribute = path.partition(":") if ":" in path else path.rpartition(".")
    try:
        function = getattr(importlib.import_module(module_name), attribute) if module_name else None
    except (ImportError, AttributeError) as error:
        raise GateConfigError(f"custom gate criterion {path!r} cannot be imported: {error}") from None
    if not callable(function):
        raise GateConfigError(f"custom gate criterion {path!r} does not name a function (module:function)")
    return function


#: the criteria a configuration names, by name -> how its value builds one
NAMED: dict[str, Callable[[Any], Criterion]] = {
    "max_drop": MaxDrop,
    "min_new_accuracy": MinNewAccuracy,
    "max_negative_flip_rate": MaxNegativeFlipRate,
    "custom": lambda path: Custom(import_callable(str(path))),
}


def criteria_from(spec: Mapping[str, Any]) -> list[Criterion]:
    """The criteria named in ``spec`` (a config's ``gate`` section); an unknown name is refused.

    ``custom`` takes one ``module:function`` or a list of them.
    """
    criteria: list[Criterion] = []
    for name, value in spec.items():
        if name not in NAMED:
            raise GateConfigError(f"unknown gate criterion {name!r}; known: {', '.join(sorted(NAMED))}")
        values = value if name == "custom" and isinstance(value, (list, tuple)) else [value]
        criteria.extend(NAMED[name](each) for each in values)
    return criteria
