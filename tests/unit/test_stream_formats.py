"""The streaming formats' adapters on real MNIST samples: WebDataset tar shards and Hugging Face
``datasets`` in streaming mode (local files, and parquet on the local S3 server), a corrupt shard."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
import torch
from s3_server import s3  # noqa: F401 - the fixture
from support.helpers import QUIET, sgd
from torch import nn

from retentive.data import TensorChunk
from retentive.data.stream_formats import HFStreamChunk, WebDatasetChunk
from retentive.errors import DataError
from retentive.updaters import ExperienceReplayModelUpdater

pytestmark = pytest.mark.usefixtures("mnist_available")
SAMPLES = 40


@pytest.fixture(scope="module")
def digits(mnist_test) -> TensorChunk:
    return mnist_test.subset(torch.arange(SAMPLES))


def write_tars(folder: Path, chunk: TensorChunk, shards: int = 2) -> list[str]:
    import webdataset as wds

    urls, per = [], len(chunk) // shards
    for shard in range(shards):
        urls.append(str(folder / f"shard-{shard:06d}.tar"))
        with wds.TarWriter(urls[-1], format=tarfile.USTAR_FORMAT) as writer:
            for i in range(shard * per, (shard + 1) * per):
                x, y = chunk[i]
                writer.write({"__key__": f"{i:06d}", "input.npy": x.numpy(), "cls": int(y), "task.cls": 0})
    return urls


def write_parquet(path: Path | str, chunk: TensorChunk, filesystem=None) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"image": [x.reshape(-1).tolist() for x in chunk.inputs], "label": chunk.targets.tolist()})
    pq.write_table(table, str(path), filesystem=filesystem)


def update(stream, folder: Path) -> ExperienceReplayModelUpdater:
    torch.manual_seed(0)
    updater = ExperienceReplayModelUpdater(
        model=nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), loss_fn=nn.CrossEntropyLoss(), optimizer=sgd(),
        memory_size=16, batch_size=8, output_state_folder=folder, **QUIET,
    )  # fmt: skip
    updater.update(stream)
    return updater


def as_image(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(1, 28, 28).float()


def test_webdataset_shards_yield_the_samples_written_and_train(digits, tmp_path):
    urls = write_tars(tmp_path, digits)
    samples = list(WebDatasetChunk(urls, task_id="task.cls", length=SAMPLES))
    assert len(samples) == SAMPLES and all(len(s) == 3 for s in samples)
    assert all(torch.equal(s[0], digits.inputs[i]) and s[1] == int(digits.targets[i]) for i, s in enumerate(samples))
    braced = WebDatasetChunk(str(tmp_path / "shard-{000000..000001}.tar"), length=SAMPLES)
    updater = update(braced, tmp_path / "state")
    assert updater.tasks_seen == {"0": SAMPLES} and len(updater.memory) == 16
    written = {x.numpy().tobytes() for x in digits.inputs}
    assert all(x.numpy().tobytes() in written for x in updater.memory.decoded("inputs"))  # stored as read


def test_a_corrupt_shard_is_one_clear_error_and_nothing_is_written(digits, tmp_path):
    urls = write_tars(tmp_path, digits)
    data = bytearray(Path(urls[1]).read_bytes())
    data[0:512] = b"\x07" * 512  # the second shard's first header: garbage
    Path(urls[1]).write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"reading the training stream failed after 20 samples \(a corrupt"):
        update(WebDatasetChunk(urls, length=SAMPLES), tmp_path / "state")
    assert not (tmp_path / "state").exists()
    Path(urls[1]).write_bytes(bytes(data[: len(data) // 3]))  # a shard cut short
    with pytest.raises(DataError, match="reading the training stream failed"):
        update(WebDatasetChunk(urls, length=SAMPLES), tmp_path / "state")


@pytest.mark.slow  # importing datasets and its parquet reader
def test_hugging_face_streaming_datasets_yield_the_samples_and_train(digits, tmp_path):
    from datasets import load_dataset

    write_parquet(tmp_path / "digits.parquet", digits)
    streamed = load_dataset("parquet", data_files=str(tmp_path / "digits.parquet"), split="train", streaming=True)
    chunk = HFStreamChunk(streamed.with_format("torch"), transform=as_image)
    samples = list(chunk)
    assert len(samples) == SAMPLES
    assert all(torch.equal(s[0], digits.inputs[i]) and s[1] == int(digits.targets[i]) for i, s in enumerate(samples))
    assert update(chunk, tmp_path / "state").tasks_seen == {"0": SAMPLES}  # no length declared: counted


@pytest.mark.slow  # the local S3 server's start
def test_hugging_face_streams_parquet_from_s3(digits, tmp_path, s3):
    from datasets import load_dataset

    url = f"s3://{s3.bucket}/chunks/digits.parquet"
    write_parquet(url.removeprefix("s3://"), digits, filesystem=s3.filesystem())
    options = {"key": s3.key, "secret": s3.secret, "client_kwargs": {"endpoint_url": s3.endpoint}}
    streamed = load_dataset("parquet", data_files=url, split="train", streaming=True, storage_options=options)
    chunk = HFStreamChunk(streamed.with_format("torch"), transform=as_image, length=SAMPLES)
    assert [s[1] for s in chunk] == digits.targets.tolist()
    assert update(chunk, tmp_path / "state").tasks_seen == {"0": SAMPLES}


def test_a_record_without_the_named_field_says_which_fields_it_has(digits, tmp_path):
    urls = write_tars(tmp_path, digits)
    with pytest.raises(DataError, match=r"no field 'input.png' \(it has \["):
        update(WebDatasetChunk(urls, x="input.png"), tmp_path / "state")
