"""A generative memory: a variational autoencoder that is a replay memory like any other.

Deep generative replay (Shin et al., NeurIPS 2017) keeps no real sample: a generator learns the
input distribution of every chunk so far, and replay draws from it. :class:`GenerativeMemory`
satisfies :class:`~retentive.memory.protocol.ReplayMemory`, so the Learner draws its replay and
offers it each step's new samples through the same calls as a sample memory's: ``sample`` is a
draw from the generator frozen at the end of the last update, labelled by the classifier frozen
with it; ``add`` is a step of the generator on the new samples and that replay. The memory's
state is the generator's weights (plus the frozen copies replay is drawn from), never data.

The VAE (Kingma & Welling, 2014) is an MLP on flattened inputs: a Bernoulli decoder for inputs in
[0, 1] (MNIST-like images; loss: binary cross-entropy summed over pixels plus the KL term, the
negative ELBO, averaged over the batch), or a Gaussian one (squared error) for other data.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from retentive.errors import DataError, MemoryShapeError, SampleNotFoundError
from retentive.memory.buffer import MemoryBatch
from retentive.memory.layout import Spec, batch_size, flat_rows
from retentive.memory.protocol import InsertionPolicy, Offer, SlotPolicy
from retentive.models.protocol import forward_routed
from retentive.streams import memory_seeds

LIKELIHOODS = ("bernoulli", "gaussian")
_M = TypeVar("_M", bound=nn.Module)
#: ``state_dict()["kind"]`` of a generative memory (a sample memory's state has none)
KIND = "generative"


class VariationalAutoencoder(nn.Module):
    """An MLP VAE for inputs of shape ``input_shape``.

    Args:
        input_shape: the shape of one sample, e.g. ``(1, 28, 28)``.
        latent_dim: the size of the latent code [32].
        hidden: the widths of the encoder's layers (the decoder mirrors them) [(400, 400)].
        likelihood: ``"bernoulli"`` (inputs in [0, 1]) or ``"gaussian"``.
    """

    def __init__(
        self,
        input_shape: Sequence[int] = (1, 28, 28),
        latent_dim: int = 32,
        hidden: Sequence[int] = (400, 400),
        likelihood: str = "bernoulli",
    ) -> None:
        super().__init__()
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
        self.input_shape = tuple(int(s) for s in input_shape)
        self.latent_dim = int(latent_dim)
        self.likelihood = likelihood
        features = math.prod(self.input_shape)
        widths = [features, *(int(h) for h in hidden)]
        encoder: list[nn.Module] = []
        for a, b in zip(widths, widths[1:]):
            encoder += [nn.Linear(a, b), nn.ReLU()]
        self.encoder = nn.Sequential(*encoder)
        self.to_stats = nn.Linear(widths[-1], 2 * self.latent_dim)
        decoder: list[nn.Module] = []
        back = [self.latent_dim, *reversed(widths[1:])]
        for a, b in zip(back, back[1:]):
            decoder += [nn.Linear(a, b), nn.ReLU()]
        decoder.append(nn.Linear(back[-1], features))
        self.decoder = nn.Sequential(*decoder)

    def check_inputs(self, x: Tensor, role: str = "training") -> None:
        """Refuse inputs whose per-sample shape is not the generator's."""
        if tuple(x.shape[1:]) != self.input_shape:
            raise DataError(
                f"the generator models inputs of shape {self.input_shape} but the {role} inputs have shape "
                f"{tuple(x.shape[1:])}; build the VariationalAutoencoder with input_shape={tuple(x.shape[1:])}"
            )

    def decode(self, z: Tensor) -> Tensor:
        """The decoder's mean for latent codes ``z``, shaped like inputs."""
        out = self.decoder(z)
        if self.likelihood == "bernoulli":
            out = torch.sigmoid(out)
        return out.view(z.shape[0], *self.input_shape)

    def loss(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The negative ELBO, averaged over the batch (the noise drawn from ``generator`` if given)."""
        flat = x.flatten(1).float()
        mean, log_var = self.to_stats(self.encoder(flat)).chunk(2, dim=1)
        noise = torch.randn_like(mean) if generator is None else torch.randn(mean.shape, generator=generator)
        z = mean + noise.to(mean) * (0.5 * log_var).exp()
        logits = self.decoder(z)
        if self.likelihood == "bernoulli":
            reconstruction = nn.functional.binary_cross_entropy_with_logits(logits, flat, reduction="none").sum(1)
        else:
            reconstruction = 0.5 * (logits - flat).pow(2).sum(1)
        kl = -0.5 * (1 + log_var - mean.pow(2) - log_var.exp()).sum(1)
        return (reconstruction + kl).mean()

    @torch.no_grad()
    def sample_inputs(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` inputs decoded from codes drawn from the prior ``N(0, I)``."""
        device = next(self.parameters()).device
        z = torch.randn(n, self.latent_dim, generator=generator).to(device)
        return self.decode(z)


class GeneratorPolicy(SlotPolicy):
    """The policy of a :class:`GenerativeMemory`: no slot for any sample (the generator learns
    them instead), and the targets are never read."""

    name = "generator"
    uses_targets = False

    def place(self, offer: Offer) -> tuple[Tensor, Tensor]:
        empty = torch.zeros(0, dtype=torch.int64)
        return empty, empty


class GenerativeMemory:
    """A :class:`~retentive.memory.protocol.ReplayMemory` whose replay is drawn from a frozen
    generator and labelled by a frozen copy of the classifier.

    :meth:`add` is one optimisation step of ``generator`` on the offered inputs plus those this
    memory replayed in the same training step (so it learns every chunk so far); :meth:`sample`
    decodes codes drawn from the prior with the *previous* generator and labels them with the
    previous classifier's argmax. :meth:`snapshot` makes the current generator and classifier the
    previous ones (the updater calls it when an update ends). It stores no row: ``len`` and
    ``capacity`` are 0, ``rows``/``gather``/``decoded`` have nothing to give, and the state is
    the weights, never data.

    Args:
        generator: the generator that learns the inputs.
        solver: the classifier (a frozen copy labels the replay).
        lr: the generator's Adam learning rate (a fresh optimiser each update, see :meth:`reseed`).
        seed: seeds the insertion stream (the generator's noise) and the replay stream, as for
            :class:`~retentive.memory.buffer.ReplayBuffer`.
    """

    capacity = 0
    #: offered batches train the generator, although no row is kept
    takes_samples = True
    input_structure: Any = None

    def __init__(self, generator: VariationalAutoencoder, solver: nn.Module, lr: float = 1e-3, seed: int = 0) -> None:
        if not isinstance(generator, VariationalAutoencoder):
            raise TypeError(f"generator must be a retentive VariationalAutoencoder, got {type(generator).__name__}")
        self.generator = generator
        self.previous_generator = _frozen_copy(generator)
        self.previous_solver = _frozen_copy(solver)
        self.has_previous = False
        self.lr = float(lr)
        self.seen = 0
        self.policy: InsertionPolicy = GeneratorPolicy()
        self.device = torch.device("cpu")
        self.insert_generator = torch.Generator()
        self.sample_generator = torch.Generator()
        self.reseed(*memory_seeds(seed, 0))
        self._optimizer: torch.optim.Optimizer | None = None
        self._replayed: Tensor | None = None  # this step's replay, which the generator learns too

    def __len__(self) -> int:
        return 0

    @property
    def keys(self) -> tuple[str, ...]:
        return ()

    def to(self, device: torch.device | str) -> GenerativeMemory:
        self.device = torch.device(device)
        for module in (self.generator, self.previous_generator, self.previous_solver):
            module.to(self.device)
        return self

    def reseed(self, insert_seed: int, sample_seed: int) -> None:
        """Restart both streams and the generator's optimiser (the updater does so per update)."""
        self.insert_generator.manual_seed(insert_seed)
        self.sample_generator.manual_seed(sample_seed)
        self._optimizer, self._replayed = None, None

    def snapshot(self, solver: nn.Module) -> None:
        """Freeze the current generator and ``solver`` as the source of replay."""
        self.previous_generator.load_state_dict(self.generator.state_dict())
        self.previous_solver.load_state_dict(solver.state_dict())
        self.has_previous = True

    def specs(self) -> dict[str, Spec]:
        return {}

    def check_room(self, rows: int) -> None:
        """Nothing to refuse: the generator's size does not grow with the samples offered."""

    def add(self, batch: Mapping[str, Any]) -> Tensor:
        """One generator step on the offered inputs and this step's replay; no slot is written."""
        inputs = batch["inputs"]
        if not torch.is_tensor(inputs):
            raise TypeError("generative replay models tensor inputs; nested inputs have no generator here")
        self.generator.check_inputs(inputs)
        real = inputs.detach().to(self.device)
        mixed = real if self._replayed is None else torch.cat([real.to(self._replayed.dtype), self._replayed])
        self._replayed = None
        if self._optimizer is None:
            self._optimizer = torch.optim.Adam(self.generator.parameters(), lr=self.lr)
        with torch.enable_grad():  # also when offered from an evaluation pass (update-end insertion)
            self._optimizer.zero_grad()
            self.generator.loss(mixed, self.insert_generator).backward()
            self._optimizer.step()
        self.seen += int(real.shape[0])
        return torch.zeros(0, dtype=torch.int64)

    def sample(self, n: int, rank: int = 0, world_size: int = 1) -> MemoryBatch | None:
        """``n`` generated inputs with the previous classifier's labels; ``None`` before any snapshot.

        The labels are the classifier's own predictions (``model_targets``): no target transform
        applies to them."""
        if n <= 0 or not self.has_previous:
            return None
        codes = torch.randn(n, self.previous_generator.latent_dim, generator=self.sample_generator)
        inputs, targets = generate(self.previous_generator, self.previous_solver, codes)
        self._replayed = inputs
        return MemoryBatch(
            torch.arange(n, device=inputs.device),
            {"inputs": inputs, "targets": targets, "task_ids": torch.zeros_like(targets)},
            model_targets=True,
        )

    def gather(self, indices: Tensor) -> MemoryBatch:
        if indices.numel():
            raise IndexError("a generative memory stores no row to gather; draw replay with sample()")
        return self.rows(0, 0)

    def rows(self, start: int, stop: int) -> MemoryBatch:
        """No row is stored: an empty batch whatever the range."""
        empty = torch.zeros(0, dtype=torch.int64, device=self.device)
        inputs = torch.zeros((0, *self.generator.input_shape), device=self.device)
        return MemoryBatch(empty, {"inputs": inputs, "targets": empty, "task_ids": empty})

    def decoded(self, key: str) -> Any:
        raise KeyError(f"a generative memory stores no {key!r}: it keeps a generator, not samples")

    def refresh(self, indices: Tensor, key: str, new: Tensor, gamma: float) -> None:
        raise KeyError(f"a generative memory stores no metadata {key!r} to refresh")

    def replace(self, rows: Mapping[str, Any], offered: int = 0) -> None:
        """Only an empty rewrite fits (it counts ``offered``): no row is kept."""
        n = batch_size(flat_rows(rows)) if rows else 0
        if n:
            raise ValueError(f"{n} rows do not fit a generative memory: it keeps none")
        self.seen += int(offered)

    def class_counts(self, num_classes: int | None = None) -> Tensor:
        return torch.zeros(num_classes or 0, dtype=torch.int64)

    # sample identity: a generator holds no sample, so there is no id to list or delete; what it
    # learned from a sample lives in its weights, like the model's (docs/how-to/memory.md)
    def begin_source(self, fingerprint: str, update: int, provided: Tensor | None = None) -> None:
        """Nothing to credit: no row is stored."""

    def chunk_identity(self, rows: Tensor) -> dict[str, Tensor]:
        raise KeyError("a generative memory stores no samples, so its rows have no identity")

    def sample_ids(self) -> Tensor:
        """No sample is stored: no id."""
        return torch.zeros(0, dtype=torch.int64)

    def source_entries(self) -> list[dict[str, Any]]:
        return []

    def delete(self, ids: Tensor | Sequence[int]) -> int:
        """Refused for any id: a generator stores no sample to remove."""
        wanted = torch.as_tensor(ids if torch.is_tensor(ids) else list(ids), dtype=torch.int64).flatten()
        if wanted.numel() == 0:
            return 0
        raise SampleNotFoundError(
            f"a generative memory stores no samples (it keeps a generator), so it holds no sample with id "
            f"{int(wanted[0])}; nothing was deleted (what the generator learned stays in its weights)",
            tuple(int(i) for i in wanted.unique()),
        )

    def nbytes(self) -> int:
        """The bytes of stored rows: none."""
        return 0

    def state_dict(self) -> dict[str, object]:
        """The three networks' weights (copies, on the CPU), the streams and the counts; no sample."""

        def weights(module: nn.Module) -> dict[str, Tensor]:
            return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}

        return {
            "kind": KIND,
            "capacity": 0,
            "policy": self.policy.name,
            "size": 0,
            "seen": self.seen,
            "generators": {"insert": self.insert_generator.get_state(), "sample": self.sample_generator.get_state()},
            "generator": weights(self.generator),
            "previous_generator": weights(self.previous_generator),
            "previous_solver": weights(self.previous_solver),
            "has_previous": self.has_previous,
        }

    def load_state_dict(self, state: dict[str, object]) -> None:
        if state.get("kind") != KIND:
            raise MemoryShapeError(
                "the saved memory is not a generative one (it holds samples, not a generator): it was written by "
                "another updater"
            )
        for name in ("generator", "previous_generator", "previous_solver"):
            getattr(self, name).load_state_dict(state[name])
        self.has_previous = bool(state["has_previous"])
        self.seen = int(state["seen"])  # type: ignore[call-overload]
        generators: dict[str, Tensor] = state["generators"]  # type: ignore[assignment]
        self.insert_generator.set_state(generators["insert"])
        self.sample_generator.set_state(generators["sample"])


@torch.no_grad()
def generate(generator: VariationalAutoencoder, solver: nn.Module, codes: Tensor) -> tuple[Tensor, Tensor]:
    """Inputs decoded from the latent ``codes`` (on the generator's device) and ``solver``'s labels
    for them: its argmax as it infers (eval mode: batch norm, dropout), both modes put back."""
    modes = (generator.training, solver.training)
    generator.eval()
    solver.eval()
    try:
        inputs = generator.decode(codes.to(next(generator.parameters()).device))
        targets = forward_routed(solver, inputs, None).argmax(dim=1)
    finally:
        generator.train(modes[0])
        solver.train(modes[1])
    return inputs, targets


def state_from_component(component: Mapping[str, Any], memory: Mapping[str, Any], model: Mapping[str, Any]) -> dict:
    """A :class:`GenerativeMemory` state from a folder written when the generator lived in a
    ``GenerativeReplay`` component (``component``: its state; ``memory``: the capacity-0 sample
    memory saved beside it; ``model``: the saved classifier).

    That component froze the generator at the *start* of the next update; this memory freezes it
    when an update ends. A saved folder is at an update's end, so the frozen pair is the saved
    generator and the saved classifier, as the next update would have frozen them.
    """

    def part(prefix: str) -> dict[str, Tensor]:
        return {k[len(prefix) :]: v for k, v in component.items() if k.startswith(prefix)}

    generator = part("memory.generator.")
    return {
        "kind": KIND,
        "capacity": 0,
        "policy": GeneratorPolicy.name,
        "size": 0,
        "seen": int(memory["seen"]),
        "generators": memory["generators"],
        "generator": generator,
        "previous_generator": generator,
        "previous_solver": dict(model),
        "has_previous": int(component["updates_trained"]) > 0,
    }


def _frozen_copy(module: _M) -> _M:
    import copy

    clone = copy.deepcopy(module)
    for parameter in clone.parameters():
        parameter.requires_grad_(False)
    return clone
