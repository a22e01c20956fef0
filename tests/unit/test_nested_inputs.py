"""Nested inputs: a sample's ``x`` is a tensor or a dict/tuple/list of tensors.

The memory keeps one preallocated tensor per input leaf and gives samples back in their
structure; the state keeps the leaves and the structure as plain data (and plain-tensor states
are unchanged); compact storage applies per floating leaf; the DDP exchange carries every leaf;
the chunk checks, chunk files, TensorChunk and ``retentive inspect`` handle the nested form; a
sample whose keys or padded lengths differ from the memory's is refused naming the leaf, before
anything is written. The end-to-end tests update a Hugging Face BERT classifier (tiny config,
random weights) with DER++ on tokenised dict inputs, in one process and in two DDP processes.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from helpers import run_support_script
from rank_threads import run_ranks
from torch import nn

from retentive.data import TensorChunk, nested
from retentive.data.files import read_chunk, write_chunk
from retentive.errors import DataError, MemoryShapeError
from retentive.memory import ReplayBuffer, UnboundedBuffer
from retentive.memory.exchange import distributed_add
from retentive.memory.identity import IDENTITY_KEYS
from retentive.state.inspection import StateReport, format_report
from retentive.updaters.validation import check_chunk, check_dataset


def text_batch(start: int, n: int, length: int = 8) -> dict:
    """``n`` samples whose every leaf encodes the sample's id, so rows can be traced across leaves."""
    ids = torch.arange(start, start + n)
    input_ids = (ids[:, None] * 10 + torch.arange(length)).long()
    mask = (torch.arange(length)[None, :] < (ids[:, None] % length + 1)).long()
    pixels = (ids % 256).float().div(255.0)[:, None].expand(n, 3).clone()  # a floating leaf, k/255
    return {
        "inputs": {"input_ids": input_ids, "attention_mask": mask, "extra": (pixels,)},
        "targets": ids % 5,
        "task_ids": torch.zeros(n, dtype=torch.long),
        "logits": ids[:, None].float().expand(n, 2).clone(),
    }


def ids_of(inputs: dict) -> torch.Tensor:
    return inputs["input_ids"][:, 0] // 10


def memory_state_round_trip(state: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)  # as the state folder is read


# ---------------------------------------------------------------- nested.py additions
def test_paths_and_layouts_of_structures():
    x = {"b": torch.zeros(2), "a": (torch.zeros(2), [torch.zeros(2)])}
    spec = nested.structure(x)
    assert (
        nested.paths(spec, "inputs") == list(nested.flatten(x, "inputs")) == ["inputs.a.0", "inputs.a.1.0", "inputs.b"]
    )
    assert nested.paths(None, "inputs") == ["inputs"]
    as_lists = nested.structure({"b": torch.zeros(2), "a": [torch.zeros(2), (torch.zeros(2),)]})
    assert nested.same_layout(spec, as_lists)  # a collate turning tuples into lists changes nothing
    assert not nested.same_layout(spec, nested.structure({"b": torch.zeros(2), "a": torch.zeros(2)}))
    assert not nested.same_layout(None, spec)
    with pytest.raises(ValueError, match="not a nested structure"):
        nested.paths({"set": [None]})
    assert nested.describe({"input_ids": torch.zeros(4, 8, dtype=torch.long)}, batched=True) == "input_ids (8,) int64"


# ---------------------------------------------------------------- the memory
def test_memory_stores_one_tensor_per_leaf_and_samples_the_structure_back():
    memory = ReplayBuffer(12, seed=3)
    for start in range(0, 40, 8):
        memory.add(text_batch(start, 8))
    assert set(memory.storage) == {
        "inputs.attention_mask",
        "inputs.input_ids",
        "inputs.extra.0",
        "targets",
        "task_ids",
        "logits",
        *IDENTITY_KEYS,
    }
    assert memory.storage["inputs.input_ids"].shape == (12, 8)
    batch = memory.sample(7)
    assert set(batch.inputs) == {"input_ids", "attention_mask", "extra"} and isinstance(batch.inputs["extra"], tuple)
    ids = ids_of(batch.inputs)
    # every leaf of a drawn row comes from the same offered sample
    reference = text_batch(0, 40)
    assert torch.equal(batch.inputs["input_ids"], reference["inputs"]["input_ids"][ids])
    assert torch.equal(batch.inputs["attention_mask"], reference["inputs"]["attention_mask"][ids])
    assert torch.equal(batch.inputs["extra"][0], reference["inputs"]["extra"][0][ids])
    assert torch.equal(batch.targets, ids % 5) and torch.equal(batch.data["logits"][:, 0], ids.float())
    # the slots chosen do not depend on the input structure: a plain memory with the same seed agrees
    plain = ReplayBuffer(12, seed=3)
    for start in range(0, 40, 8):
        plain.add({**text_batch(start, 8), "inputs": text_batch(start, 8)["inputs"]["input_ids"].float()})
    assert torch.equal(plain.storage["targets"], memory.storage["targets"])
    assert torch.equal(memory.decoded("inputs")["input_ids"], memory.storage["inputs.input_ids"])
    assert memory.input_spec() == {
        "attention_mask": (torch.Size([8]), torch.int64),
        "extra.0": (torch.Size([3]), torch.float32),
        "input_ids": (torch.Size([8]), torch.int64),
    }
    rows = memory.rows(2, 5)
    assert torch.equal(rows.inputs["input_ids"], memory.storage["inputs.input_ids"][2:5])


def test_compact_storage_applies_per_floating_leaf_and_integer_leaves_are_kept():
    compact, plain = ReplayBuffer(10, input_dtype="uint8"), ReplayBuffer(10)
    for memory in (compact, plain):
        memory.add(text_batch(0, 30))
    assert compact.storage["inputs.extra.0"].dtype == torch.uint8
    assert compact.storage["inputs.input_ids"].dtype == torch.int64 == compact.storage["inputs.attention_mask"].dtype
    assert compact.nbytes() < plain.nbytes()
    drawn = compact.sample(10)
    assert drawn.inputs["extra"][0].dtype == torch.float32
    assert torch.equal(drawn.inputs["extra"][0], text_batch(0, 30)["inputs"]["extra"][0][ids_of(drawn.inputs)])
    # a state saved compactly loads into a plain memory (and back) leaf by leaf
    to_plain = ReplayBuffer(10)
    to_plain.load_state_dict(memory_state_round_trip(compact.state_dict()))
    assert to_plain.storage["inputs.extra.0"].dtype == torch.float32
    assert torch.equal(to_plain.storage["inputs.extra.0"], plain.storage["inputs.extra.0"])


def test_nested_state_is_plain_data_and_continues_bit_identically():
    memory = ReplayBuffer(10, seed=5, input_dtype="float16")
    memory.add(text_batch(0, 17))
    state = memory_state_round_trip(memory.state_dict())
    assert state["input_structure"] == {"dict": {"attention_mask": None, "extra": {"tuple": [None]}, "input_ids": None}}
    clone = ReplayBuffer(10, seed=99, input_dtype="float16")
    clone.load_state_dict(state)
    assert isinstance(clone.sample(3).inputs["extra"], tuple)
    clone.sample_generator.set_state(memory.sample_generator.get_state())
    memory.add(text_batch(17, 9))
    clone.add(text_batch(17, 9))
    for key in memory.storage:
        assert torch.equal(clone.storage[key], memory.storage[key]), key
    assert torch.equal(clone.sample(4).inputs["input_ids"], memory.sample(4).inputs["input_ids"])


def test_plain_tensor_memory_state_keeps_its_format():
    """The state written before nested inputs existed: exactly these keys, inputs under 'inputs'."""
    memory = ReplayBuffer(6)
    batch = text_batch(0, 9)
    memory.add({**batch, "inputs": batch["inputs"]["extra"][0]})
    state = memory.state_dict()
    assert set(state) == {"capacity", "policy", "size", "seen", "generators", "storage", "dtypes", "sources"}
    assert set(state["storage"]) == {"inputs", "targets", "task_ids", "logits", *IDENTITY_KEYS}
    assert state["dtypes"]["inputs"] == "float32"
    legacy = {k: v for k, v in state.items() if k != "generators"}
    legacy["generator"] = memory.insert_generator.get_state()  # one generator, as the oldest states have
    clone = ReplayBuffer(6)
    clone.load_state_dict(memory_state_round_trip(legacy))
    assert clone.input_structure is None and torch.equal(
        clone.sample(6).inputs.sort(0).values, memory.storage["inputs"].sort(0).values
    )


def test_a_saved_state_whose_leaves_and_structure_disagree_is_refused():
    memory = ReplayBuffer(4)
    memory.add(text_batch(0, 4))
    state = memory.state_dict()
    del state["storage"]["inputs.attention_mask"]
    with pytest.raises(MemoryShapeError, match="input leaves"):
        ReplayBuffer(4).load_state_dict(state)


def _snapshot(memory: ReplayBuffer) -> dict:
    return {"state": memory.state_dict(), "structure": memory.input_structure}


def _same(a, b) -> bool:
    if torch.is_tensor(a):
        return torch.is_tensor(b) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


@pytest.mark.parametrize(
    "change, match",
    [
        (
            lambda b: b["inputs"].pop("attention_mask"),
            r"leaves \[inputs.attention_mask, inputs.extra.0, inputs.input_ids\] "
            r"but the batch's inputs have \[inputs.extra.0, inputs.input_ids\]",
        ),
        (
            lambda b: b["inputs"].update(input_ids=torch.zeros(4, 12, dtype=torch.long)),
            r"'inputs.input_ids' holds samples of shape \(8,\).*got shape \(12,\).*length 12 .* stores length 8",
        ),
        (lambda b: b["inputs"].update(input_ids=b["inputs"]["input_ids"][:, :5]), r"length 5 .* stores length 8"),
        (
            lambda b: b["inputs"].update(attention_mask=b["inputs"]["attention_mask"].int()),
            r"'inputs.attention_mask'.*torch.int32",
        ),
        (lambda b: b.update(inputs=b["inputs"]["input_ids"]), r"inputs have \[inputs\]"),
        (lambda b: b["inputs"].update(extra=torch.zeros(4, 3)), r"inputs have \[inputs.attention_mask, inputs.extra, "),
        (lambda b: b["inputs"].update(input_ids=b["inputs"]["input_ids"][:3]), "disagree on the batch size"),
        (lambda b: b["inputs"].update(input_ids=b["inputs"]["input_ids"].numpy()), "must be tensors .* got ndarray"),
        (lambda b: b.update({"inputs.x": torch.zeros(4)}), "collides with the input leaves"),
    ],
)
def test_a_batch_that_does_not_fit_is_refused_naming_the_leaf_and_nothing_changes(change, match):
    memory = ReplayBuffer(10, seed=1)
    memory.add(text_batch(0, 6))
    before = _snapshot(memory)
    bad = text_batch(6, 4)
    change(bad)
    with pytest.raises(MemoryShapeError, match=match):
        memory.add(bad)
    assert _same(_snapshot(memory), before)


def test_a_list_where_a_tuple_was_stored_is_the_same_layout():
    memory = ReplayBuffer(10)
    memory.add(text_batch(0, 4))
    batch = text_batch(4, 4)
    batch["inputs"]["extra"] = list(batch["inputs"]["extra"])  # what a DataLoader's collate makes of it
    memory.add(batch)
    assert len(memory) == 8 and isinstance(memory.sample(2).inputs["extra"], tuple)


def test_unbounded_memory_grows_every_leaf():
    memory = UnboundedBuffer()
    for start in range(0, 50, 7):
        memory.add(text_batch(start, 7))
    assert len(memory) == 56
    assert torch.equal(ids_of(memory.decoded("inputs")), torch.arange(56))
    assert torch.equal(memory.decoded("inputs")["extra"][0], text_batch(0, 56)["inputs"]["extra"][0])


def test_a_nested_chunk_moves_into_a_memory_and_back_out_as_a_dataset():
    """What Offline-ER, GDumb and Joint do with a chunk and their memory."""
    from retentive.updaters.chunks import add_chunk, memory_dataset

    memory = UnboundedBuffer()
    chunk = text_chunk(0, 23)
    add_chunk(memory, chunk, task_id=2)
    back = memory_dataset(memory)
    assert torch.equal(back.inputs["input_ids"], chunk.inputs["input_ids"]) and isinstance(back.inputs["extra"], tuple)
    assert torch.equal(back.targets, chunk.targets) and bool((back.task_ids == 2).all())


def test_the_resume_fingerprint_reads_every_leaf():
    from retentive.state.resume import dataset_fingerprint

    chunk = text_chunk(0, 9)
    same = dataset_fingerprint(text_chunk(0, 9))
    assert dataset_fingerprint(chunk) == same
    chunk.inputs["attention_mask"][4, 0] = 7  # the middle sample, one leaf
    assert dataset_fingerprint(chunk) != same


# ---------------------------------------------------------------- the DDP exchange
def test_replicas_of_a_nested_memory_equal_one_process_inserting_the_union():
    world_size, steps = 2, 12
    sizes = lambda step, rank: 6 if step < steps - 1 else 1 + 2 * rank  # noqa: E731
    offsets, batches = 0, []
    for step in range(steps):
        per_rank = []
        for rank in range(world_size):
            per_rank.append(text_batch(offsets, sizes(step, rank)))
            offsets += sizes(step, rank)
        batches.append(per_rank)

    def work(rank, exchange):
        memory = ReplayBuffer(20, seed=7, input_dtype="uint8")
        for per_rank in batches:
            distributed_add(memory, per_rank[rank], exchange)
        return memory

    replicas = run_ranks(world_size, work)
    single = ReplayBuffer(20, seed=7, input_dtype="uint8")
    for per_rank in batches:
        union = {key: nested.cat([b[key] for b in per_rank]) for key in per_rank[0]}
        single.add(union)
    for replica in replicas:
        assert set(replica.storage) == set(single.storage) and replica.seen == single.seen == offsets
        for key in single.storage:
            assert torch.equal(replica.storage[key], single.storage[key]), key
        assert replica.input_structure == single.input_structure


def test_replicas_with_other_leaves_of_the_same_row_size_are_refused():
    def work(rank, exchange):
        memory = ReplayBuffer(10)
        n = 4
        inputs = (
            {"a": torch.zeros(n, 4, dtype=torch.int32), "b": torch.zeros(n, 4, dtype=torch.int32)}
            if rank == 0
            else {"a": torch.zeros(n, 8, dtype=torch.int32)}
        )
        batch = {
            "inputs": inputs,
            "targets": torch.zeros(n, dtype=torch.long),
            "task_ids": torch.zeros(n, dtype=torch.long),
        }
        distributed_add(memory, batch, exchange)

    with pytest.raises(MemoryShapeError, match="layout"):
        run_ranks(2, work)


def test_a_batch_one_rank_cannot_store_is_refused_on_every_rank_before_anything_is_written():
    def work(rank, exchange):
        memory = ReplayBuffer(10, seed=2)
        distributed_add(memory, text_batch(rank * 4, 4), exchange)
        before = _snapshot(memory)
        bad = text_batch(8 + rank * 4, 4, length=8 if rank == 0 else 9)  # rank 1's text is one token longer
        try:
            distributed_add(memory, bad, exchange)
        except MemoryShapeError as error:
            return str(error), _same(_snapshot(memory), before)
        return None, False

    (message0, unchanged0), (message1, unchanged1) = run_ranks(2, work)
    assert message0 == "rank(s) [1] offered samples that do not fit the memory (their error names the key)"
    assert "length 9" in message1 and "stores length 8" in message1
    assert unchanged0 and unchanged1


# ---------------------------------------------------------------- chunk checks
class DictModel(nn.Module):
    """Mean of token embeddings under the mask, plus a floating side input: dict in, logits out."""

    def __init__(self, vocab: int = 1000, classes: int = 5) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, 8)
        self.side = nn.Linear(3, 8)
        self.head = nn.Linear(8, classes)

    def forward(self, x):
        mask = x["attention_mask"].unsqueeze(-1).float()
        pooled = (self.embed(x["input_ids"]) * mask).sum(1) / mask.sum(1).clamp(min=1)
        return self.head(pooled + self.side(x["extra"][0]))


def text_chunk(start: int, n: int, length: int = 8) -> TensorChunk:
    batch = text_batch(start, n, length)
    return TensorChunk(batch["inputs"], batch["targets"])


def test_check_dataset_accepts_fitting_nested_chunks_and_names_what_differs():
    memory = ReplayBuffer(10)
    check_dataset(text_chunk(0, 5), "training", memory)  # nothing stored yet: any layout
    memory.add(text_batch(0, 5))
    check_dataset(text_chunk(5, 5), "training", memory)
    with pytest.raises(
        MemoryShapeError,
        match=r"training inputs: memory input leaf 'inputs.attention_mask' .* got shape \(12,\).* length 12 .* length 8",
    ):
        check_dataset(text_chunk(5, 5, length=12), "training", memory)
    missing = text_chunk(5, 5)
    del missing.inputs["extra"]
    with pytest.raises(
        MemoryShapeError, match=r"but the validation inputs have \[inputs.attention_mask, inputs.input_ids\]"
    ):
        check_dataset(missing, "validation", memory)
    with pytest.raises(MemoryShapeError, match=r"inputs have \[inputs\]"):
        check_dataset(TensorChunk(torch.zeros(5, 8), torch.zeros(5, dtype=torch.long)), "training", memory)
    as_dict = text_chunk(5, 5)
    as_dict.inputs["extra"] = {"0": as_dict.inputs["extra"][0]}  # the same leaf names, a dict for a tuple
    with pytest.raises(MemoryShapeError, match=r"structured as .*'extra': \{'tuple'.* are .*'extra': \{'dict'"):
        check_dataset(as_dict, "training", memory)
    plain = ReplayBuffer(10)
    plain.add(
        {
            "inputs": torch.zeros(2, 1, 28, 28),
            "targets": torch.zeros(2, dtype=torch.long),
            "task_ids": torch.zeros(2, dtype=torch.long),
        }
    )
    with pytest.raises(
        MemoryShapeError,
        match=r"training inputs have shape \(1, 14, 14\) .* memory holds inputs of shape \(1, 28, 28\)",
    ):
        check_dataset(TensorChunk(torch.zeros(3, 1, 14, 14), torch.zeros(3, dtype=torch.long)), "training", plain)
    with pytest.raises(DataError, match="inputs must be tensors, got ndarray"):
        check_dataset([(torch.zeros(3).numpy(), 0)], "training", plain)
    with pytest.raises(DataError, match="training dataset is empty"):
        check_dataset(text_chunk(0, 5).subset(torch.arange(0)), "training", memory)


def test_check_chunk_probes_a_dict_model_and_checks_every_floating_leaf():
    model = DictModel()
    check_chunk(model, text_chunk(0, 10), "training", None, 0)
    chunk = text_chunk(0, 10)
    chunk.inputs["extra"][0][7, 1] = float("nan")
    with pytest.raises(
        DataError, match=r"input leaf 'inputs.extra.0' holds NaN or infinite values in 1 samples \(first: sample 7\)"
    ):
        check_chunk(model, chunk, "training", None, 0)
    wrong = text_chunk(0, 10)
    wrong.inputs["input_ids"] = wrong.inputs["input_ids"] + 5000  # beyond the embedding
    with pytest.raises(
        DataError, match=r"model cannot run on a training input with the leaves .*inputs.input_ids \(8,\) int64"
    ):
        check_chunk(model, wrong, "training", None, 0)


# ---------------------------------------------------------------- TensorChunk and chunk files
def test_tensor_chunk_indexes_every_leaf():
    chunk = text_chunk(0, 10)
    x, y = chunk[3]
    assert x["input_ids"].shape == (8,) and int(ids_of({"input_ids": x["input_ids"][None]})) == 3 and int(y) == 3
    xs, ys = chunk[torch.tensor([1, 4])]
    assert torch.equal(ids_of(xs), torch.tensor([1, 4])) and isinstance(xs["extra"], tuple)
    sub = chunk.subset(torch.tensor([9, 0]))
    assert torch.equal(ids_of(sub.inputs), torch.tensor([9, 0])) and len(sub) == 2
    with pytest.raises(ValueError, match="every input leaf must share the batch dimension"):
        TensorChunk({"a": torch.zeros(3, 2), "b": torch.zeros(4, 2)}, torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="3 inputs but 4 targets"):
        TensorChunk({"a": torch.zeros(3, 2)}, torch.zeros(4, dtype=torch.long))


@pytest.mark.parametrize("suffix", [".pt", ".npz"])
def test_chunk_files_carry_several_input_arrays(tmp_path, suffix):
    inputs = {
        "input_ids": torch.randint(0, 100, (6, 8)),
        "attention_mask": torch.ones(6, 8, dtype=torch.int32),
        "image": {"pixels": torch.randint(0, 256, (6, 2, 2), dtype=torch.uint8)},
    }
    chunk = TensorChunk(inputs, torch.arange(6) % 3, torch.zeros(6, dtype=torch.long))
    path = write_chunk(tmp_path / f"c{suffix}", chunk)
    if suffix == ".pt":
        assert set(torch.load(path, weights_only=True)) == {
            "inputs.attention_mask",
            "inputs.image.pixels",
            "inputs.input_ids",
            "targets",
            "task_ids",
        }
    back = read_chunk(path)
    assert set(back.inputs) == {"attention_mask", "image", "input_ids"}
    assert torch.equal(back.inputs["input_ids"], inputs["input_ids"])
    assert back.inputs["attention_mask"].dtype == torch.int64  # integers -> int64, each array on its own
    assert torch.equal(back.inputs["image"]["pixels"], inputs["image"]["pixels"].float() / 255)  # uint8 = images
    assert torch.equal(back.targets, chunk.targets) and torch.equal(back.task_ids, chunk.task_ids)
    # a folder of such files is concatenated leaf by leaf
    folder = tmp_path / "folder"
    write_chunk(folder / "a.pt", chunk)
    write_chunk(folder / "b.npz", chunk.subset(torch.tensor([5, 0])))
    both = read_chunk(folder)
    assert torch.equal(both.inputs["input_ids"], torch.cat([inputs["input_ids"], inputs["input_ids"][[5, 0]]]))


def test_chunk_files_with_inconsistent_input_arrays_are_refused(tmp_path):
    def save(name: str, payload: dict) -> Path:
        path = tmp_path / name
        torch.save(payload, path)
        return path

    y = torch.zeros(4, dtype=torch.long)
    both = save(
        "both.pt", {"inputs": torch.zeros(4, 2), "inputs.input_ids": torch.zeros(4, 2, dtype=torch.long), "targets": y}
    )
    with pytest.raises(DataError, match="holds both 'inputs' and"):
        read_chunk(both)
    rows = save("rows.pt", {"inputs.a": torch.zeros(4, 2), "inputs.b": torch.zeros(3, 2), "targets": y})
    with pytest.raises(DataError, match=r"inputs.b have shape \(3, 2\); expected 4 rows"):
        read_chunk(rows)
    clash = save("clash.pt", {"inputs.a": torch.zeros(4), "inputs.a.b": torch.zeros(4), "targets": y})
    with pytest.raises(DataError, match="both an array and a group"):
        read_chunk(clash)
    unknown = save("unknown.pt", {"inputs.a": torch.zeros(4), "labels": y, "targets": y})
    with pytest.raises(DataError, match=r"unexpected keys \['labels'\]"):
        read_chunk(unknown)
    folder = tmp_path / "mixed"
    folder.mkdir()
    write_chunk(folder / "a.pt", TensorChunk({"a": torch.zeros(4, 2)}, y))
    write_chunk(folder / "b.pt", TensorChunk({"a": torch.zeros(4, 3)}, y))
    with pytest.raises(DataError, match=r"file 1 has inputs.a of shape \(3,\)"):
        read_chunk(folder)
    with pytest.raises(DataError, match="CSV holds one tabular"):
        write_chunk(tmp_path / "c.csv", TensorChunk({"a": torch.zeros(4, 2)}, y))
    with pytest.raises(DataError, match="tuple or list"):
        write_chunk(tmp_path / "t.pt", TensorChunk((torch.zeros(4, 2),), y))


# ---------------------------------------------------------------- retentive inspect
def test_the_report_shows_each_input_leaf():
    report = StateReport("s", True, None, {"memory": {"size": 3, "seen": 9, "keys": []}})
    report.memory_inputs = {
        "inputs.attention_mask": {"shape": [16], "dtype": "int64", "stored_dtype": "int64"},
        "inputs.pixels": {"shape": [1, 4, 4], "dtype": "float32", "stored_dtype": "uint8"},
    }
    text = format_report(report)
    assert "    inputs.attention_mask  (16,) int64\n" in text
    assert "    inputs.pixels          (1, 4, 4) float32, stored as uint8" in text


# ---------------------------------------------------------------- end to end: a Hugging Face classifier
def _rows_offered(memory_inputs: dict, memory_targets: torch.Tensor, chunks: list) -> torch.Tensor:
    """Per memory row, whether some offered sample has exactly its leaves and its label."""
    found = torch.zeros(memory_targets.shape[0], dtype=torch.bool)
    for chunk in chunks:
        same = torch.ones(memory_targets.shape[0], len(chunk), dtype=torch.bool)
        for key, stored in memory_inputs.items():
            same &= (stored[:, None, :] == chunk.inputs[key][None, :, :]).all(-1)
        same &= memory_targets[:, None] == chunk.targets[None, :]
        found |= same.any(1)
    return found


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    """DER++ on a tiny BERT over two chunks of tokenised text, each update a new updater that
    loads the previous state folder; and the same without a memory, for comparison."""
    from text_worker import chunks, make_updater

    from retentive.evaluation import accuracy

    out = tmp_path_factory.mktemp("text")
    train, test = chunks()
    make_updater(None, out / "s0").update(train[0], task_id=0)
    updater = make_updater(out / "s0", out / "s1")
    updater.update(train[1], task_id=1)
    make_updater(None, out / "f0", memory_size=0).update(train[0], task_id=0)
    forgetful = make_updater(out / "f0", None, memory_size=0)
    forgetful.update(train[1], task_id=1)
    return {
        "out": out,
        "train": train,
        "test": test,
        "updater": updater,
        "accuracy": [accuracy(updater.model, c) for c in test],
        "forgetful_accuracy": [accuracy(forgetful.model, c) for c in test],
    }


@pytest.mark.slow
def test_der_updates_a_hugging_face_text_classifier_on_dict_inputs_through_state_folders(text_run):
    from text_worker import MAX_LENGTH, TextClassifier

    from retentive import load_model
    from retentive.state import load_state
    from retentive.state.inspection import inspect_state

    train, test, out = text_run["train"], text_run["test"], text_run["out"]
    assert set(train[0].inputs) == {"input_ids", "attention_mask"}  # what the tokenizer gave
    # it learnt the new topics and, thanks to the replayed dict samples, kept the old ones
    assert min(text_run["accuracy"]) > 0.8, text_run["accuracy"]
    assert text_run["forgetful_accuracy"][0] < 0.2, text_run["forgetful_accuracy"]

    memory = load_state(out / "s1").memory  # read with weights_only=True
    assert memory["input_structure"] == {"dict": {"attention_mask": None, "input_ids": None}}
    stored = {
        key.removeprefix("inputs."): memory["storage"][key] for key in ("inputs.input_ids", "inputs.attention_mask")
    }
    assert stored["input_ids"].shape == (80, MAX_LENGTH) and stored["input_ids"].dtype == torch.int64
    assert bool(_rows_offered(stored, memory["storage"]["targets"], train).all())
    assert set(memory["storage"]["targets"].tolist()) == {0, 1, 2, 3}
    assert memory["storage"]["logits"].shape == (80, 4)

    model = load_model(TextClassifier(), out / "s1")
    model.eval(), text_run["updater"].model.eval()
    with torch.no_grad():
        assert torch.equal(model(test[0].inputs), text_run["updater"].model(test[0].inputs))

    report = inspect_state(out / "s1")
    assert report.verified and report.memory_inputs == {
        key: {"shape": [MAX_LENGTH], "dtype": "int64", "stored_dtype": "int64"}
        for key in ("inputs.attention_mask", "inputs.input_ids")
    }


@pytest.mark.slow
def test_text_of_another_padded_length_or_keys_is_refused_and_nothing_changes(text_run, tmp_path):
    from state_helpers import hidden_entries, same_snapshot, snapshot, tree_digest
    from text_worker import make_updater, tokenised_chunk

    state1 = text_run["out"] / "s1"
    digest = tree_digest(state1)

    longer = tokenised_chunk((2, 3), 8, seed=5)
    longer.inputs = {k: torch.nn.functional.pad(v, (0, 4)) for k, v in longer.inputs.items()}  # padded to 20
    no_mask = tokenised_chunk((2, 3), 8, seed=5)
    del no_mask.inputs["attention_mask"]
    for chunk, match in (
        (longer, r"'inputs.attention_mask' holds samples of shape \(16,\).*length 20 .* stores length 16"),
        (
            no_mask,
            r"leaves \[inputs.attention_mask, inputs.input_ids\] but the training inputs have \[inputs.input_ids\]",
        ),
    ):
        updater = make_updater(state1, tmp_path / "s2")
        before = snapshot(updater)
        with pytest.raises(MemoryShapeError, match=match):
            updater.update(chunk, task_id=2)
        assert same_snapshot(snapshot(updater), before)
        assert not (tmp_path / "s2").exists() and hidden_entries(tmp_path) == []
    assert tree_digest(state1) == digest


def _ddp_dumps(out: Path, name: str) -> list[dict]:
    return [torch.load(out / f"{name}.rank{r}.pt", weights_only=True) for r in range(2)]


@pytest.mark.slow
@pytest.mark.ddp
def test_the_text_classifier_under_two_process_ddp(tmp_path):
    from text_worker import EPOCHS, TextClassifier, chunks, make_updater

    from retentive import load_model
    from retentive.evaluation import accuracy

    run_support_script("text_worker.py", "--out", str(tmp_path), cwd=tmp_path, timeout=400)
    for name in ("ddp0", "ddp1"):
        rank0, rank1 = _ddp_dumps(tmp_path, name)
        assert rank0["world_size"] == rank1["world_size"] == 2
        assert _same(rank0["model"], rank1["model"]) and _same(rank0["memory"], rank1["memory"]), name
    memory = _ddp_dumps(tmp_path, "ddp1")[0]["memory"]
    train, test = chunks()
    assert memory["input_structure"] == {"dict": {"attention_mask": None, "input_ids": None}}
    stored = {key: memory["storage"][f"inputs.{key}"] for key in ("input_ids", "attention_mask")}
    # every epoch offered every sample of both ranks' shards to every replica
    assert memory["size"] == 80 and memory["seen"] == EPOCHS * (len(train[0]) + len(train[1]))
    assert bool(_rows_offered(stored, memory["storage"]["targets"], train).all())
    assert set(memory["storage"]["targets"].tolist()) == {0, 1, 2, 3}
    # the folder written by two ranks loads in one process, for inference and to update further
    model = load_model(TextClassifier(), tmp_path / "ddp1")
    assert _same(model.state_dict(), _ddp_dumps(tmp_path, "ddp1")[0]["model"])
    accuracies = [accuracy(model, c) for c in test]
    assert min(accuracies) > 0.6, accuracies
    single = make_updater(tmp_path / "ddp1", tmp_path / "single2", max_epochs=1)
    assert _same(single.memory.state_dict(), memory)
    single.update(train[0].subset(torch.arange(32)), task_id=0)
    assert (tmp_path / "single2" / "memory.pt").exists() and single.memory.seen == memory["seen"] + 32
