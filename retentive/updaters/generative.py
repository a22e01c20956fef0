"""Deep generative replay (Shin et al., NeurIPS 2017): a generator replaces the replay memory.

Per step, ``k`` inputs are drawn from the previous generator (frozen at the update's start) and
labelled by the previous classifier; the classifier trains on the new batch and them, the
replayed share of each step being ``replay_ratio`` (``k / (n + k)``, and the loss the mean over
the mixed batch: DGR's ``r * L_new + (1 - r) * L_replay`` with ``r = 1 - replay_ratio``). The
generator trains next to it on the same mixture of real and replayed inputs, so it learns every
chunk so far. No real sample is stored: the state is the generator's weights.

``consolidation_steps`` adds a replay-only phase after each update (the "sleep" of dual-memory and
brain-inspired replay): steps on inputs drawn from the generator just trained, labelled by the
classifier as it ended the update.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from retentive.components.base import Component, StepContext, UpdateContext
from retentive.learner import OptimizerFactory
from retentive.memory.generative import GenerativeMemory, VariationalAutoencoder
from retentive.models.routing import forward_routed
from retentive.streams import Purpose
from retentive.updaters.arguments import check_count
from retentive.updaters.base import ModelUpdater
from retentive.updaters.settings import LossFunction, OwnComponentsSettings

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack is Python 3.11+
else:
    from typing import Unpack


def replay_count(new: int, replay_ratio: float) -> int:
    """Replayed samples beside ``new`` ones so that they make ``replay_ratio`` of the step."""
    return max(1, round(replay_ratio / (1.0 - replay_ratio) * new)) if replay_ratio > 0 else 0


class GenerativeReplay(Component):
    """The replay term of DGR, and the generator's training beside the classifier.

    The weight is ``replay_ratio / (1 - replay_ratio)``, so that under the Learner's normaliser the
    total is ``(1 - replay_ratio) * L_new + replay_ratio * L_replay``.
    """

    snapshot_update: Tensor  # component states (add_state)
    updates_trained: Tensor

    def __init__(
        self, model: nn.Module, generator: VariationalAutoencoder, replay_ratio: float, generator_lr: float
    ) -> None:
        super().__init__(weight=replay_ratio / (1.0 - replay_ratio))
        self.replay_ratio = float(replay_ratio)
        self.generator_lr = float(generator_lr)
        self.memory = GenerativeMemory(generator, model)
        self.add_state("snapshot_update", torch.tensor(-1))
        self.add_state("updates_trained", torch.tensor(0))
        self._optimizer: torch.optim.Optimizer | None = None
        self._replay: Tensor | None = None
        #: the last step's replayed batch (for inspection and tests)
        self.last: dict[str, Tensor] = {}

    def on_update_start(self, ctx: UpdateContext) -> None:
        if int(self.snapshot_update) != ctx.update:  # not when a resumed update restarts
            if int(self.updates_trained) > 0:
                self.memory.snapshot(ctx.model)
            self.snapshot_update.fill_(ctx.update)
        self._optimizer = torch.optim.Adam(self.memory.generator.parameters(), lr=self.generator_lr)

    def loss(self, ctx: StepContext) -> Tensor | None:
        self._replay = None
        k = replay_count(int(ctx.targets.shape[0]), self.replay_ratio)
        replay = self.memory.sample(k, ctx.generator)
        if replay is None:
            return None
        self._replay = replay.inputs
        self.last = {"inputs": replay.inputs, "targets": replay.targets}
        logits = forward_routed(ctx.model, replay.inputs.to(ctx.outputs.dtype), None)
        return ctx.task_loss(logits, replay.targets)

    def on_after_step(self, ctx: StepContext) -> None:
        """One generator step on the real new inputs and the replayed ones."""
        assert self._optimizer is not None
        real = ctx.raw_inputs
        if not torch.is_tensor(real):
            raise TypeError("generative replay models tensor inputs; nested inputs have no generator here")
        inputs = real if self._replay is None else torch.cat([real.to(self._replay.dtype), self._replay])
        self._optimizer.zero_grad()
        self.memory.generator.loss(inputs).backward()
        self._optimizer.step()

    def on_update_end(self, ctx: UpdateContext) -> None:
        self.updates_trained += 1
        self._optimizer = None

    def extra_repr(self) -> str:
        return f"replay_ratio={self.replay_ratio}, generator_lr={self.generator_lr}"


class GenerativeReplayModelUpdater(ModelUpdater):
    """Deep generative replay: a VAE generator learned next to the classifier; no real sample kept.

    Args:
        generator: the :class:`~retentive.memory.generative.VariationalAutoencoder` [one for
            ``(1, 28, 28)`` inputs, latent 32, hidden (400, 400)].
        replay_ratio: the replayed share of each step's samples, in [0, 1) [0.5].
        generator_lr: the generator's Adam learning rate [1e-3].
        consolidation_steps: replay-only classifier steps after each update [0: none].
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
        self.replay = GenerativeReplay(model, generator, float(replay_ratio), generator_lr)
        self.consolidation_steps, self.consolidation_batch_size = consolidation_steps, consolidation_batch_size
        super().__init__(model, loss_fn, optimizer, components=[self.replay, *components], **kwargs)

    def check_data(self, train_dataset: Dataset) -> None:
        sample = train_dataset[0] if len(train_dataset) else None  # type: ignore[arg-type]
        if sample is not None and torch.is_tensor(sample[0]):
            self.replay.memory.generator.check_inputs(sample[0].unsqueeze(0))

    def after_fit(self, train_dataset: Dataset, task_id: int) -> None:
        super().after_fit(train_dataset, task_id)
        if self.consolidation_steps:
            self._consolidate()

    def _consolidate(self) -> None:
        """Replay-only steps: generated inputs labelled by the classifier as it ended the update."""
        model, generator = self.model, self.replay.memory.generator
        teacher = copy.deepcopy(model).eval()
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = self.learner.optimizer_factory(params)
        sequence = np.random.SeedSequence(self.seed, spawn_key=(self.updates_done, int(Purpose.COMPONENTS), 1))
        noise = torch.Generator().manual_seed(int(sequence.generate_state(1, np.uint64)[0]) >> 1)
        was_training = model.training
        model.train()
        for _ in range(self.consolidation_steps):
            inputs = generator.sample_inputs(self.consolidation_batch_size, noise)
            with torch.no_grad():
                targets = forward_routed(teacher, inputs, None).argmax(dim=1)
            optimizer.zero_grad()
            values = self.learner.loss_fn(forward_routed(model, inputs, None), targets)
            (values if values.dim() == 0 else values.mean()).backward()
            optimizer.step()
        model.train(was_training)
