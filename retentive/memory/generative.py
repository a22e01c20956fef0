"""A generative memory: a variational autoencoder that is sampled like a replay memory.

Deep generative replay (Shin et al., NeurIPS 2017) keeps no real sample: a generator learns the
input distribution of every chunk so far, and replay draws from it. The memory's state is the
generator's weights (plus the frozen copies replay is drawn from), never data.

The VAE (Kingma & Welling, 2014) is an MLP on flattened inputs: a Bernoulli decoder for inputs in
[0, 1] (MNIST-like images; loss: binary cross-entropy summed over pixels plus the KL term, the
negative ELBO, averaged over the batch), or a Gaussian one (squared error) for other data.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeVar

import torch
from torch import Tensor, nn

from retentive.errors import DataError
from retentive.memory.buffer import MemoryBatch
from retentive.models.protocol import forward_routed

LIKELIHOODS = ("bernoulli", "gaussian")
_M = TypeVar("_M", bound=nn.Module)


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

    def loss(self, x: Tensor) -> Tensor:
        """The negative ELBO, averaged over the batch."""
        flat = x.flatten(1).float()
        mean, log_var = self.to_stats(self.encoder(flat)).chunk(2, dim=1)
        z = mean + torch.randn_like(mean) * (0.5 * log_var).exp()
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


class GenerativeMemory(nn.Module):
    """Replay drawn from a frozen generator and labelled by a frozen copy of the classifier.

    ``generator`` learns during an update; at its start :meth:`snapshot` freezes copies of it and
    of the classifier, which replay reads (the "previous generator and solver" of DGR).
    :meth:`sample` returns a :class:`~retentive.memory.buffer.MemoryBatch`, like a replay memory.
    """

    has_previous: Tensor  # a registered buffer

    def __init__(self, generator: VariationalAutoencoder, solver: nn.Module) -> None:
        super().__init__()
        self.generator = generator
        self.previous_generator = _frozen_copy(generator)
        self.previous_solver = _frozen_copy(solver)
        self.register_buffer("has_previous", torch.tensor(False))

    def snapshot(self, solver: nn.Module) -> None:
        """Freeze the current generator and ``solver`` as the source of replay."""
        self.previous_generator.load_state_dict(self.generator.state_dict())
        self.previous_solver.load_state_dict(solver.state_dict())
        self.has_previous.fill_(True)

    def __len__(self) -> int:
        return 0  # holds no sample

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> MemoryBatch | None:
        """``n`` generated inputs with the previous classifier's labels; ``None`` before any snapshot."""
        if n <= 0 or not bool(self.has_previous):
            return None
        solver, modes = self.previous_solver, (self.previous_generator.training, self.previous_solver.training)
        self.previous_generator.eval()
        solver.eval()  # labels as the classifier infers (batch norm, dropout), then its mode back
        try:
            inputs = self.previous_generator.sample_inputs(n, generator)
            logits = forward_routed(solver, inputs, None)
        finally:
            self.previous_generator.train(modes[0])
            solver.train(modes[1])
        targets = logits.argmax(dim=1)
        task_ids = torch.zeros_like(targets)
        return MemoryBatch(
            torch.arange(n, device=inputs.device), {"inputs": inputs, "targets": targets, "task_ids": task_ids}
        )


def _frozen_copy(module: _M) -> _M:
    import copy

    clone = copy.deepcopy(module)
    for parameter in clone.parameters():
        parameter.requires_grad_(False)
    return clone
