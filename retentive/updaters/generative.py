"""Deep generative replay (Shin et al., NeurIPS 2017): a generator is the replay memory.

The memory is a :class:`~retentive.memory.generative.GenerativeMemory`, drawn from and offered
samples by the Learner like any replay memory. Per step, ``k`` inputs are drawn from the previous
generator (frozen when the last update ended) and labelled by the previous classifier; the
classifier trains on the new batch and them in one forward pass, the replayed share of a full
step being ``replay_ratio`` (``k / (n + k)``, and the loss DGR's ``r * L_new + (1 - r) * L_replay``
with ``r = 1 - replay_ratio``). The generator trains next to it on the same mixture of real and
replayed inputs (the memory's ``add``), so it learns every chunk so far. No real sample is
stored: the state is the generator's weights.

``consolidation_steps`` adds a replay-only phase after each update (the "sleep" of dual-memory and
brain-inspired replay): steps on inputs drawn from the generator just trained, labelled by the
classifier as it ended the update. The sleep is a fit of its own (:meth:`fits`), so it resumes,
keeps its best epoch and logs on the update's step axis like the update's first fit.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from retentive.components.base import Component
from retentive.components.replay import MemoryCrossEntropy
from retentive.data.streaming import declared_length, first_sample
from retentive.learner import OptimizerFactory
from retentive.memory.generative import GenerativeMemory, VariationalAutoencoder, generate, state_from_component
from retentive.memory.policies import InsertionPolicy
from retentive.state.format import State
from retentive.streams import Purpose
from retentive.updaters.arguments import check_count
from retentive.updaters.base import ModelUpdater
from retentive.updaters.hooks import Fit
from retentive.updaters.settings import LossFunction, OwnComponentsSettings

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack is Python 3.11+
else:
    from typing import Unpack


def replay_count(new: int, replay_ratio: float) -> int:
    """Replayed samples beside ``new`` ones so that they make ``replay_ratio`` of the step."""
    return max(1, round(replay_ratio / (1.0 - replay_ratio) * new)) if replay_ratio > 0 else 0


class Dreams(Dataset):
    """The sleep's data: inputs decoded from fixed prior ``codes`` by a copy of the generator,
    labelled by a copy of the classifier, both taken when the sleep starts (on the CPU, in eval
    mode). Only the codes are held; each batch is decoded when the loader asks for it."""

    supports_batch_indexing = True  # the loader asks for whole batches (retentive.data.loaders)

    def __init__(self, generator: VariationalAutoencoder, solver: nn.Module, codes: Tensor) -> None:
        self.generator = copy.deepcopy(generator).cpu().eval()
        self.solver = copy.deepcopy(solver).cpu().eval()
        self.codes = codes

    def __len__(self) -> int:
        return int(self.codes.shape[0])

    def __getitem__(self, index: Any) -> tuple[Tensor, Tensor, Tensor]:
        codes = self.codes[index]
        inputs, targets = generate(self.generator, self.solver, codes if codes.dim() == 2 else codes[None])
        if codes.dim() == 1:  # one sample, as a map-style dataset gives it
            inputs, targets = inputs[0], targets[0]
        return inputs, targets, torch.zeros_like(targets)


class GenerativeReplayModelUpdater(ModelUpdater):
    """Deep generative replay: a VAE generator learned next to the classifier; no real sample kept.

    Args:
        generator: the :class:`~retentive.memory.generative.VariationalAutoencoder` [one for
            ``(1, 28, 28)`` inputs, latent 32, hidden (400, 400)].
        replay_ratio: the replayed share of each step's samples, in [0, 1) [0.5].
        generator_lr: the generator's Adam learning rate [1e-3].
        consolidation_steps: replay-only classifier steps after each update, a fit of their own
            (:meth:`fits`) [0: none].
        consolidation_batch_size: generated samples per consolidation step [64].
        **kwargs: every :class:`~retentive.updaters.base.ModelUpdater` argument but a memory.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFunction,
        optimizer: OptimizerFactory,
        generator: VariationalAutoencoder | None = None,
        replay_ratio: float = 0.5,
        generator_lr: float = 1e-3,
        consolidation_steps: int = 0,
        consolidation_batch_size: int = 64,
        components: Sequence[Component] = (),
        **kwargs: Unpack[OwnComponentsSettings],
    ) -> None:
        if kwargs.get("memory_size"):
            raise ValueError("GenerativeReplayModelUpdater stores no real sample; memory_size must be 0")
        if not 0.0 <= float(replay_ratio) < 1.0:
            raise ValueError(f"replay_ratio must lie in [0, 1), got {replay_ratio}")
        check_count("consolidation_steps", consolidation_steps, 0)
        check_count("consolidation_batch_size", consolidation_batch_size, 1)
        generator = generator if generator is not None else VariationalAutoencoder()
        if not isinstance(generator, VariationalAutoencoder):
            raise TypeError(f"generator must be a retentive VariationalAutoencoder, got {type(generator).__name__}")
        self._generator, self._generator_lr = generator, float(generator_lr)
        # the replay term, weighted so that the normalised total is (1 - r) * L_new + r * L_replay
        self.replay = MemoryCrossEntropy(weight=float(replay_ratio) / (1.0 - float(replay_ratio)))
        self.consolidation_steps, self.consolidation_batch_size = consolidation_steps, consolidation_batch_size
        super().__init__(model, loss_fn, optimizer, components=[self.replay, *components], **kwargs)
        self.memory: GenerativeMemory
        self.memory_batch_size = self.learner.memory_batch_size = replay_count(self.new_batch_size, replay_ratio)

    def build_memory(self, memory_size: int, policy: InsertionPolicy | None, seed: int) -> GenerativeMemory:
        return GenerativeMemory(self._generator, self.model, self._generator_lr, seed)

    def migrate_state(self, state: State) -> State:
        """A folder written when the generator lived in a component loads as this memory's state."""
        learner = state.learner.get("learner", {})
        if list(learner.get("component_types", []))[:1] == ["GenerativeReplay"]:
            memory = state_from_component(learner["components"][0], state.memory, state.model)
            learner = {**learner, "components": [{}, *learner["components"][1:]]}
            learner["component_types"] = [type(self.replay).__name__, *learner["component_types"][1:]]
            state = replace(state, learner={**state.learner, "learner": learner}, memory=memory)
        return state

    def check_data(self, train_dataset: Dataset) -> None:
        sample = first_sample(train_dataset) if declared_length(train_dataset) != 0 else None
        if sample is not None and torch.is_tensor(sample[0]):
            self.memory.generator.check_inputs(sample[0].unsqueeze(0))

    def fits(self, train_dataset: Dataset, val_dataset: Dataset | None, task_id: int) -> Iterator[Fit]:
        """The update's fit; then, with ``consolidation_steps``, the sleep: one epoch of that many
        steps of ``consolidation_batch_size`` generated samples, validated like the first fit."""
        yield from super().fits(train_dataset, val_dataset, task_id)
        if self.consolidation_steps:
            super().after_fit(train_dataset, task_id)  # update-end insertion first: the generator learns the chunk
            with self._sleeping():
                yield Fit(self._dreams(), val_dataset, epochs=1, batch_size=self.consolidation_batch_size)

    def after_fit(self, train_dataset: Dataset, task_id: int) -> None:
        if not self.consolidation_steps:  # with a sleep, its update-end work ran before it (fits)
            super().after_fit(train_dataset, task_id)
        self.memory.snapshot(self.model)  # the next update replays what this one learned

    def _dreams(self) -> Dreams:
        """The sleep's samples: prior codes from its own stream of this update (the same on every
        rank and in a resumed run), decoded by the generator and labelled by the classifier as they
        are now, when the update's fit has ended."""
        sequence = np.random.SeedSequence(self.seed, spawn_key=(self.updates_done, int(Purpose.COMPONENTS), 1))
        noise = torch.Generator().manual_seed(int(sequence.generate_state(1, np.uint64)[0]) >> 1)
        generator = self.memory.generator
        count = self.consolidation_steps * self.consolidation_batch_size
        return Dreams(generator, self.model, torch.randn(count, generator.latent_dim, generator=noise))

    @contextmanager
    def _sleeping(self) -> Iterator[None]:
        """The Learner replay-only for the sleep's fit: nothing drawn from the frozen pair or offered
        to the generator, no logit masked (the dreams hold every class learned so far); generated
        inputs get the buffer transform as replay does, their labels (the classifier's own) no
        target transform. Everything is put back afterwards."""
        learner = self.learner
        saved = (learner.memory_batch_size, learner.update_memory_every_step, learner.chunk_classes)
        train_transforms = learner.transforms["train"]
        learner.memory_batch_size, learner.update_memory_every_step, learner.chunk_classes = 0, False, None
        learner.transforms["train"] = (learner.transforms["buffer"][0], None)
        try:
            yield
        finally:
            learner.memory_batch_size, learner.update_memory_every_step, learner.chunk_classes = saved
            learner.transforms["train"] = train_transforms
