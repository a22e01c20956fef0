"""The Learner's state beyond weights and memory: counters, component state, component streams."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the Learner's attributes, for the type checker (see retentive.learner.host)
    from retentive.learner.host import LearnerHost as _Host
else:
    _Host = object


class StateMixin(_Host):
    """Saving and loading the Learner's extra state (a mixin of :class:`~retentive.learner.Learner`)."""

    def extra_state(self) -> dict[str, Any]:
        """Counters, component state and component randomness: all but the weights and the memory."""
        return {
            "total_steps": self.total_steps,
            "components": [c.state_dict() for c in self.components],
            "component_types": [type(c).__name__ for c in self.components],
            "generator": self.generator.get_state(),
            "rng": _rng_state(self.rng),
        }

    def load_extra_state(self, state: dict[str, Any]) -> None:
        types = [type(c).__name__ for c in self.components]
        if list(state["component_types"]) != types:
            raise ValueError(f"the state holds components {state['component_types']} but the learner has {types}")
        self.total_steps = int(state["total_steps"])
        for component, component_state in zip(self.components, state["components"]):
            component.load_state_dict(component_state)
        if "generator" in state:  # states written before the component streams existed lack them
            self.generator.set_state(state["generator"])
            self.rng.setstate(_rng_from_state(state["rng"]))


def _rng_state(rng: random.Random) -> list[Any]:
    """A Python RNG's state as plain data (``torch.load(weights_only=True)`` reads it)."""
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def _rng_from_state(state: list[Any]) -> tuple[Any, ...]:
    version, internal, gauss = state
    return (int(version), tuple(int(v) for v in internal), gauss)
