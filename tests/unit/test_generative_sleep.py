"""Generative replay's sleep (``consolidation_steps``): what it learns (the pair that ended the
update, the plain task loss), and that it is a fit of the one fit path: a Trainer fit of its own,
logged on the update's step axis, resumed when interrupted, ending identical to a clean run."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from generative_support import make, two_chunks
from recording_logger import RecordingLogger
from state_helpers import same_snapshot

from retentive import VariationalAutoencoder
from retentive.models import MLP
from retentive.state import load_state
from retentive.state.resume import checkpoint_root
from retentive.streams import Purpose

SLEEP = dict(consolidation_steps=3, consolidation_batch_size=16)


@pytest.fixture(scope="module")
def chunks():
    return two_chunks()


class Fits(pl.Callback):
    """Per fit: the raw batches and the total losses of its steps, the samples the memory had been
    offered when it started, and the validation loss it ended with."""

    def __init__(self) -> None:
        self.batches: list[list[Any]] = []
        self.losses: list[list[torch.Tensor]] = []
        self.seen: list[int] = []
        self.validated: list[float] = []

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.validated.append(float(trainer.callback_metrics["val_loss"]))

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.batches.append([])
        self.losses.append([])
        self.seen.append(pl_module.memory.seen)  # type: ignore[attr-defined]

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, i: int):
        self.batches[-1].append(batch)
        self.losses[-1].append(outputs["loss"])


def test_consolidation_takes_replay_only_steps(tmp_path, chunks):
    plain = make(tmp_path, "a", consolidation_steps=0).update(chunks[0])
    consolidated = make(tmp_path, "b", consolidation_steps=5, consolidation_batch_size=8).update(chunks[0])
    assert any(not torch.equal(a, b) for a, b in zip(plain.state_dict().values(), consolidated.state_dict().values()))


def test_sleep_trains_on_the_pair_that_ended_the_update_and_the_next_update_replays_the_slept_pair(tmp_path, chunks):
    """The sleep after update 1 learns, with the plain task loss, samples of the generator as update
    1 left it, labelled by the classifier as update 1 ended - not by the pair frozen when update 0
    ended, which update 1 itself replayed. The pair frozen for update 2 is that generator and the
    slept classifier. The classifier that ends update 1 is made by hand to call everything a 3."""
    make(tmp_path, "s0", **SLEEP).update(chunks[0])
    fits = Fits()
    updater = make(tmp_path, "s1", tmp_path / "s0", callbacks=[fits], **SLEEP)
    replayed_during_update = {k: v.clone() for k, v in updater.memory.previous_solver.state_dict().items()}
    steps: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    ended: dict[str, dict[str, torch.Tensor]] = {}
    loss_fn, own_fits = updater.learner.loss_fn, updater.fits

    class Recording(torch.nn.Module):
        def forward(self, logits, targets):
            value = loss_fn(logits, targets)
            steps.append((logits.detach().clone(), targets.clone(), value.detach()))
            return value

    def ending_with_a_3(*args: Any) -> Iterator[Any]:
        own = own_fits(*args)
        yield next(own)  # the update's fit
        head = [m for m in updater.model.modules() if isinstance(m, torch.nn.Linear)][-1]
        with torch.no_grad():
            head.bias[3] += 20.0  # the classifier as the update ended: class 3 for any input
        ended["model"] = {k: v.clone() for k, v in updater.model.state_dict().items()}
        ended["generator"] = {k: v.clone() for k, v in updater.memory.generator.state_dict().items()}
        updater.learner.loss_fn = Recording()
        try:
            yield from own  # the sleep
        finally:
            updater.learner.loss_fn = loss_fn

    updater.fits = ending_with_a_3  # type: ignore[method-assign]
    updater.update(chunks[1])
    assert len(fits.batches) == 2 and len(steps) == 3, "the sleep: a second fit of 3 steps"
    for (logits, targets, value), total in zip(steps, fits.losses[1]):
        assert torch.equal(targets, torch.full((16,), 3)), "labelled by the classifier that ended the update"
        assert float(value) == pytest.approx(float(torch.nn.functional.cross_entropy(logits, targets)), rel=1e-6)
        assert float(total) == pytest.approx(float(value), rel=1e-6), "the plain task loss, no replay term"
    before, generator = MLP(hidden=(32,)), VariationalAutoencoder((1, 28, 28), latent_dim=8, hidden=(64,))
    before.load_state_dict(replayed_during_update)
    generator.load_state_dict(ended["generator"])
    # the sleep's samples, redrawn by hand from its own stream and the generator as the update ended:
    # every one of them is learned once (in the order the sleep's loader shuffled them)
    sequence = np.random.SeedSequence(0, spawn_key=(1, int(Purpose.COMPONENTS), 1))
    noise = torch.Generator().manual_seed(int(sequence.generate_state(1, np.uint64)[0]) >> 1)
    with torch.no_grad():
        expected = generator.decode(torch.randn(48, 8, generator=noise)).flatten(1)
    learned = torch.cat([batch[0] for batch in fits.batches[1]]).flatten(1)
    nearest = torch.cdist(learned, expected, compute_mode="donot_use_mm_for_euclid_dist").min(dim=1)
    assert float(nearest.values.max()) < 1e-4 and sorted(nearest.indices.tolist()) == list(range(48))
    teacher = MLP(hidden=(32,))
    teacher.load_state_dict(ended["model"])
    first = fits.batches[1][0][0]
    with torch.no_grad():
        assert torch.allclose(steps[0][0], teacher(first), atol=1e-5), "the generator that ended the update"
        assert not bool((before(first).argmax(1) == 3).all()), "the pair update 1 replayed labels otherwise"
    # what update 2 replays: the generator that slept and the classifier after sleeping
    memory = updater.memory
    for a, b in zip(memory.previous_generator.state_dict().values(), ended["generator"].values()):
        assert torch.equal(a, b)
    for a, b in zip(memory.previous_solver.state_dict().values(), updater.model.state_dict().values()):
        assert torch.equal(a, b)
    assert any(not torch.equal(a, ended["model"][k]) for k, a in updater.model.state_dict().items()), "it slept"


def _halve(inputs: torch.Tensor) -> torch.Tensor:
    return inputs * 0.5


def _shift(targets: torch.Tensor) -> torch.Tensor:
    return (targets + 1) % 10


@pytest.mark.parametrize("insertion", ["step", "update_end"])
def test_the_sleep_is_logged_on_the_updates_step_axis_with_its_own_batch_and_replays_nothing(
    tmp_path, chunks, insertion
):
    """The update's TensorBoard run holds the sleep's steps after the first fit's, on the one step
    axis, and both fits are validated; the sleep's generated inputs get the buffer transform, and its labels (the classifier's)
    neither target transform; no replay is drawn and nothing offered to the generator, which has
    learned the whole chunk before the sleep (also when it is offered at the update's end)."""
    logger, fits = RecordingLogger(), Fits()
    updater = make(
        tmp_path,
        "s0",
        memory_insertion=insertion,
        logger=logger,
        log_every_n_steps=1,
        callbacks=[fits],
        buffer_transform=_halve,
        train_target_transform=_shift,
        buffer_target_transform=_shift,
        **SLEEP,
    )
    sleep_ctx: list[Any] = []
    original = updater.replay.loss

    def recording(ctx):
        if len(fits.batches) == 2:
            sleep_ctx.append(ctx)
        return original(ctx)

    updater.replay.loss = recording  # type: ignore[method-assign]
    updater.update(chunks[0], chunks[1].subset(torch.arange(24)))
    first = len(fits.batches[0])  # 120 samples, 12 a step
    assert first == 10 and [len(b[0]) for b in fits.batches[1]] == [16, 16, 16]
    assert len(fits.validated) == 2 and fits.validated[0] != fits.validated[1], "each fit validated"
    assert updater.learner.total_steps == first + 3
    logged = [step for step, metrics in logger.metrics if "loss/total" in metrics]
    assert logged == list(range(1, first + 4)), "the sleep's steps follow the fit's on one axis"
    assert fits.seen == [0, 120] and updater.memory.seen == 120, "the chunk learned before; the dreams not offered"
    assert len(sleep_ctx) == 3 and all(ctx.memory is None for ctx in sleep_ctx), "no replay drawn in the sleep"
    for ctx, batch in zip(sleep_ctx, fits.batches[1]):
        assert torch.equal(ctx.inputs, batch[0] * 0.5) and torch.equal(ctx.targets, batch[1])
    assert updater.learner.transforms["train"][1] is _shift and updater.learner.memory_batch_size == 12, "put back"


class Interrupt(Exception):
    pass


class CrashInSleep(pl.Callback):
    """Crashes the second fit (the sleep) after its second step."""

    def __init__(self) -> None:
        self.fits = 0

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.fits += 1

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        if self.fits == 2 and pl_module.total_steps == 12:  # type: ignore[operator]
            raise Interrupt("crash in the sleep")


def test_an_interrupted_sleep_resumes_after_the_first_fit_and_ends_identical(tmp_path, chunks):
    settings = dict(resume=True, **SLEEP)
    make(tmp_path, "clean", **settings).update(chunks[0])
    crashed = make(tmp_path, "s0", callbacks=[CrashInSleep()], **settings)
    with pytest.raises(Interrupt):
        crashed.update(chunks[0])
    assert [p.name for p in checkpoint_root(tmp_path / "s0").iterdir()] == ["epoch-0001"], "the first fit's end"
    fits = Fits()
    make(tmp_path, "s0", callbacks=[fits], **settings).update(chunks[0])
    assert [len(b) for b in fits.batches] == [3], "only the sleep ran again"
    clean, again = load_state(tmp_path / "clean"), load_state(tmp_path / "s0")
    assert same_snapshot({"m": clean.model, "memory": clean.memory}, {"m": again.model, "memory": again.memory})
    assert same_snapshot(clean.learner, again.learner)
    assert again.learner["learner"]["total_steps"] == 13 and not checkpoint_root(tmp_path / "s0").exists()
