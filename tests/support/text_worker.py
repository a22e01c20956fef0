"""A Hugging Face text classifier updated by DER++ on tokenised dict inputs, for
tests/unit/test_nested_inputs.py; also the 2-process DDP run that test starts in a subprocess.

The model is ``transformers.BertForSequenceClassification`` built from a tiny config (random
weights, nothing downloaded), wrapped so that ``forward(x)`` takes the tokenizer's dict and
returns logits. The tokenizer is a real ``PreTrainedTokenizerFast`` over a word-level vocabulary
built here; it pads every sentence to one fixed length, the rule the memory needs. The task:
four topics, each with its own words among shared filler words; chunk 0 holds topics 0-1 and
chunk 1 topics 2-3 (class-incremental).

    python tests/support/text_worker.py --out DIR

runs two updates with ``devices=2, strategy="ddp"`` (Lightning re-runs this script for rank 1)
and dumps each rank's model and memory to ``DIR/<name>.rank<r>.pt``.
"""

from __future__ import annotations

import argparse
import os
import sys
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

MAX_LENGTH = 16
EPOCHS = 8
TOPICS = 4
WORDS_PER_TOPIC = 6
FILLER = [f"w{i}" for i in range(12)]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]


def topic_words(topic: int) -> list[str]:
    return [f"t{topic}x{i}" for i in range(WORDS_PER_TOPIC)]


def build_tokenizer():
    """A fast word-level tokenizer (``[CLS] ... [SEP]``, padding to ``MAX_LENGTH``), no download."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = SPECIAL + FILLER + [w for t in range(TOPICS) for w in topic_words(t)]
    vocab = {word: i for i, word in enumerate(words)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]"
    )


def sentences(topic: int, n: int, generator: torch.Generator) -> list[str]:
    """``n`` sentences of 3-12 words: each word a word of ``topic`` with probability 0.4, else filler."""
    out = []
    lengths = torch.randint(3, 13, (n,), generator=generator).tolist()
    for length in lengths:
        own = torch.rand(length, generator=generator) < 0.4
        picks = torch.randint(0, 100, (length,), generator=generator).tolist()
        words = [
            topic_words(topic)[p % WORDS_PER_TOPIC] if o else FILLER[p % len(FILLER)]
            for o, p in zip(own.tolist(), picks)
        ]
        out.append(" ".join(words))
    return out


def tokenised_chunk(topics: tuple[int, ...], per_topic: int, seed: int):
    """A :class:`~retentive.data.TensorChunk` of tokenised sentences: x = the tokenizer's dict."""
    from retentive.data import TensorChunk

    generator = torch.Generator().manual_seed(seed)
    texts, labels = [], []
    for topic in topics:
        texts += sentences(topic, per_topic, generator)
        labels += [topic] * per_topic
    encoded = build_tokenizer()(
        texts, padding="max_length", truncation=True, max_length=MAX_LENGTH, return_tensors="pt"
    )
    order = torch.randperm(len(labels), generator=generator)
    inputs = {key: value[order].contiguous() for key, value in encoded.items()}
    return TensorChunk(inputs, torch.tensor(labels)[order])


def chunks() -> tuple[list, list]:
    """(train chunks, test chunks) for topics (0, 1) and (2, 3)."""
    train = [tokenised_chunk((0, 1), 120, seed=1), tokenised_chunk((2, 3), 120, seed=2)]
    test = [tokenised_chunk((0, 1), 60, seed=11), tokenised_chunk((2, 3), 60, seed=12)]
    return train, test


class TextClassifier(nn.Module):
    """``BertForSequenceClassification`` from a tiny config; ``forward(x)`` takes the tokenizer's
    dict (``input_ids``, ``token_type_ids``, ``attention_mask``) and returns the logits."""

    def __init__(self) -> None:
        super().__init__()
        from transformers import BertConfig, BertForSequenceClassification

        vocab_size = len(SPECIAL) + len(FILLER) + TOPICS * WORDS_PER_TOPIC
        config = BertConfig(
            vocab_size=vocab_size,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=MAX_LENGTH,
            num_labels=TOPICS,
            pad_token_id=0,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
        )
        self.bert = BertForSequenceClassification(config)

    def forward(self, x: dict[str, Tensor]) -> Tensor:
        return self.bert(**x).logits


def make_updater(input_state: Path | None, output_state: Path | None, devices: int = 1, **extra: Any):
    from retentive import DarkExperienceReplayModelUpdater

    torch.manual_seed(0)
    settings: dict[str, Any] = dict(
        memory_size=80,
        batch_size=32,
        batch_memory_frac=0.5,
        alpha=0.5,
        beta=1.0,
        max_epochs=EPOCHS,
        seed=0,
        accelerator="cpu",
        devices=devices,
        strategy="ddp" if devices > 1 else "auto",
        logger=False,
        enable_progress_bar=False,
    )
    settings.update(extra)
    return DarkExperienceReplayModelUpdater(
        TextClassifier(),
        nn.CrossEntropyLoss(),
        partial(torch.optim.AdamW, lr=5e-3),
        input_state_folder=input_state,
        output_state_folder=output_state,
        **settings,
    )


def rank() -> int:
    return torch.distributed.get_rank() if torch.distributed.is_initialized() else int(os.environ.get("LOCAL_RANK", 0))


def dump(out: Path, name: str, updater) -> None:
    payload = {
        "model": {k: v.clone() for k, v in updater.model.state_dict().items()},
        "memory": updater.memory.state_dict(),
        "world_size": torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1,
    }
    torch.save(payload, out / f"{name}.rank{rank()}.pt")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    train, _ = chunks()
    updater = make_updater(None, args.out / "ddp0", devices=2)
    updater.update(train[0], task_id=0)
    dump(args.out, "ddp0", updater)
    updater = make_updater(args.out / "ddp0", args.out / "ddp1", devices=2)
    updater.update(train[1], task_id=1)
    dump(args.out, "ddp1", updater)


if __name__ == "__main__":
    main()
