"""Streaming chunks: an IterableDataset through update(), its sharding, seeds, resume and bad input."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from support.helpers import QUIET, sgd
from torch import nn
from torch.utils.data import IterableDataset

from retentive.data import TensorChunk
from retentive.data.loaders import training_loader
from retentive.data.streaming import StreamChunk
from retentive.errors import DataError
from retentive.gates import Gate
from retentive.state import load_state
from retentive.state.home import ModelHome
from retentive.updaters import ExperienceReplayModelUpdater

pytestmark = pytest.mark.usefixtures("mnist_available")


class Stream(IterableDataset):
    """A chunk read in order, once per iteration; ``length`` is what it declares (None: nothing)."""

    def __init__(self, chunk: TensorChunk, length: int | None = -1, stop: int | None = None) -> None:
        self.chunk, self.stop = chunk, len(chunk) if stop is None else stop
        self.length = len(chunk) if length == -1 else length

    def __iter__(self):
        for index in range(self.stop):
            yield self.chunk[index]

    def __len__(self) -> int:
        if self.length is None:
            raise TypeError("no length")
        return self.length


@pytest.fixture(scope="module")
def chunk(mnist_train) -> TensorChunk:
    return mnist_train.subset(torch.arange(300))


def make(out: Path, epochs: int = 2, **kwargs) -> ExperienceReplayModelUpdater:
    """ER on a linear model; ``out`` is a folder of its own (no sibling states to warn about)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    settings = {**QUIET, "max_epochs": epochs, **kwargs}
    return ExperienceReplayModelUpdater(
        model=model, loss_fn=nn.CrossEntropyLoss(), optimizer=sgd(), memory_size=64, batch_size=32,
        output_state_folder=out, **settings,
    )  # fmt: skip


def weights(updater) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in updater.model.parameters()])


def folder_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(folder)).encode() + path.read_bytes())
    return digest.hexdigest()


def test_a_stream_trains_reproducibly_and_records_what_it_saw(chunk, tmp_path):
    first, second = make(tmp_path / "a" / "state"), make(tmp_path / "b" / "state")
    first.update(Stream(chunk))
    second.update(Stream(chunk))
    assert torch.equal(weights(first), weights(second))  # same seed, same model
    undeclared = make(tmp_path / "c" / "state")
    undeclared.update(Stream(chunk, length=None))  # no len(): Lightning counts the steps as it goes
    assert torch.equal(weights(first), weights(undeclared))
    assert first.tasks_seen == undeclared.tasks_seen == {"0": 300}
    assert len(first.memory) == 64
    other = make(tmp_path / "d" / "state", seed=1)
    other.update(Stream(chunk))
    assert not torch.equal(weights(first), weights(other))
    data = load_state(tmp_path / "a" / "state").manifest["lineage"]["data"]
    assert data["samples"] == 300 and data["sha256"] and data["stream"]
    make(tmp_path / "e" / "state", input_state_folder=tmp_path / "a" / "state").update(
        Stream(chunk)
    )  # a second update reads it back


def test_each_reader_keeps_its_share_once_per_epoch_with_padding_across_ranks(chunk):
    def labels(parts):
        return sorted(int(y) for part in parts for _, y in part)

    everything = sorted(chunk.targets.tolist())
    shares = [list(StreamChunk(Stream(chunk), shuffle=True, rank=r, world_size=2)) for r in range(2)]
    assert len(shares[0]) == len(shares[1]) == 150 and labels(shares) == everything
    odd = Stream(chunk, stop=299, length=299)
    shares = [list(StreamChunk(odd, shuffle=False, rank=r, world_size=2)) for r in range(2)]
    assert len(shares[0]) == len(shares[1]) == 150  # rank 1 repeats the stream's first sample for rank 0's last
    assert torch.equal(shares[1][-1][0], chunk[0][0])
    loader = training_loader(Stream(chunk), 32, shuffle=True, seed=3, num_workers=2)
    batches = list(loader)
    assert len(batches) == len(loader) == 10 and sum(len(b[1]) for b in batches) == 300
    seen = sorted(float(x.sum()) for b in batches for x in b[0])
    assert seen == sorted(float(x.sum()) for x in chunk.inputs)  # every sample once across both workers
    again = [b[1] for b in training_loader(Stream(chunk), 32, shuffle=True, seed=3, num_workers=2)]
    assert all(torch.equal(a, b[1]) for a, b in zip(again, batches, strict=True))
    next_epoch = [b[1] for b in loader]  # the loader draws a new order for each epoch
    assert not all(torch.equal(a, b[1]) for a, b in zip(next_epoch, batches, strict=True))


def test_workers_give_the_same_update_each_time(chunk, tmp_path):
    first, second = make(tmp_path / "a" / "state", num_workers=2), make(tmp_path / "b" / "state", num_workers=2)
    first.update(Stream(chunk))
    second.update(Stream(chunk))
    assert torch.equal(weights(first), weights(second)) and first.tasks_seen == {"0": 300}


def test_a_stream_update_resumes_at_its_last_epoch_and_ends_as_an_unbroken_one(chunk, tmp_path):
    import pytorch_lightning as pl

    class Crash(pl.Callback):
        def on_train_epoch_start(self, trainer, module):
            if trainer.current_epoch == 1:
                raise RuntimeError("simulated crash")

    whole = make(tmp_path / "whole" / "state", epochs=3, resume=True)
    whole.update(Stream(chunk))
    with pytest.raises(RuntimeError, match="simulated crash"):
        make(tmp_path / "out" / "state", epochs=3, resume=True, callbacks=[Crash()]).update(Stream(chunk))
    resumed = make(tmp_path / "out" / "state", epochs=3, resume=True)
    resumed.update(Stream(chunk))
    assert torch.equal(weights(resumed), weights(whole))


@pytest.mark.parametrize(
    ("stream", "message"),
    [
        (lambda c: Stream(c, stop=0, length=None), "stream is empty"),
        (lambda c: Stream(c, stop=0), "stream is empty"),
        (lambda c: Stream(c, stop=200), "ended early: it yielded 200 samples but declares 300"),
        (lambda c: Stream(c, length=250), "ran past its end: it yielded 300 samples but declares 250"),
    ],
)
def test_a_stream_that_ends_early_or_is_empty_is_refused_and_nothing_is_lost(chunk, tmp_path, stream, message):
    state0, state1 = tmp_path / "in" / "state", tmp_path / "out" / "state"
    make(state0).update(chunk.subset(torch.arange(50)))
    before = folder_digest(state0)
    updater = make(state1, input_state_folder=state0)
    held = weights(updater)
    with pytest.raises(DataError, match=message):
        updater.update(stream(chunk))
    assert not state1.exists()
    assert folder_digest(state0) == before and torch.equal(weights(updater), held)


def test_features_that_index_the_chunk_refuse_a_stream_by_name(chunk, tmp_path):
    with pytest.raises(DataError, match=r"a gate's held-out split \(holdout=\) needs a map-style chunk"):
        home = ModelHome(tmp_path / "home").create()
        make(Path(home.location)).update(Stream(chunk), gate=Gate({"max_drop": 0.05}, holdout=0.1))
    with pytest.raises(DataError, match="the training collate_fn needs a map-style chunk"):
        make(tmp_path / "b" / "state").update(Stream(chunk), train_dataset_collate_fn=lambda rows: rows)


def test_a_streamed_validation_set_is_read_in_order(chunk, tmp_path):
    updater = make(tmp_path / "a" / "state", metric="val_loss")
    updater.update(Stream(chunk), val_dataset=Stream(chunk.subset(torch.arange(100))))
    assert updater.tasks_seen == {"0": 300}


def test_shift_detection_reads_a_stream_as_it_reads_the_chunk(chunk):
    from retentive import KolmogorovSmirnovCovariateShiftDetector

    results = []
    for reference, query, workers in [
        (chunk.subset(torch.arange(150)), chunk.subset(torch.arange(150, 300)), 0),
        (Stream(chunk.subset(torch.arange(150)), length=None), Stream(chunk.subset(torch.arange(150, 300))), 2),
    ]:
        detector = KolmogorovSmirnovCovariateShiftDetector(num_preprocessing_workers=workers)
        detector.fit(reference)
        results.append(detector.test(query))
    assert (
        results[0].p_value == pytest.approx(results[1].p_value) and results[1].n_reference == results[1].n_query == 150
    )


@pytest.mark.slow
@pytest.mark.parametrize("method", ["ElasticWeightConsolidation", "ICaRL", "PackNet"])
def test_methods_that_read_the_chunk_again_at_update_end_take_a_stream(chunk, tmp_path, method):
    import retentive.updaters as updaters

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.ReLU(), nn.Linear(16, 10))
    memory = {"memory_size": 32} if method == "ICaRL" else {}
    updater = getattr(updaters, f"{method}ModelUpdater")(
        model=model, loss_fn=nn.CrossEntropyLoss(), optimizer=sgd(), batch_size=16,
        output_state_folder=tmp_path / "state", **memory, **QUIET,
    )  # fmt: skip
    updater.update(Stream(chunk.subset(torch.arange(120)), length=None))  # Fisher, herding, pruning: one more pass
    assert updater.tasks_seen == {"0": 120}


def test_an_epoch_sized_by_the_chunk_needs_a_declared_length(chunk, tmp_path):
    from retentive.updaters import GDumbModelUpdater

    updater = GDumbModelUpdater(
        model=nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), loss_fn=nn.CrossEntropyLoss(), optimizer=sgd(),
        memory_size=32, batch_size=16, output_state_folder=tmp_path / "state", **QUIET,
    )  # fmt: skip
    with pytest.raises(DataError, match="needs the chunk's number of samples"):
        updater.update(Stream(chunk, length=None))
    assert not (tmp_path / "state").exists()
