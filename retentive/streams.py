"""One seed, independent random streams: each consumer draws from its own generator.

A seed fed to several generators makes them draw the same numbers: with the loader, the
memory and the global RNG all seeded ``s``, the reservoir's decisions were correlated with the
data order. Every consumer's seed is therefore derived from ``(seed, update, purpose)`` by
NumPy's :class:`~numpy.random.SeedSequence` spawning scheme (``SeedSequence(seed,
spawn_key=(update, purpose))`` is child ``purpose`` of child ``update`` of ``SeedSequence(seed)``),
whose children are designed to be independent streams. The derivation is plain arithmetic on
integers, so every process and every resume derives the same seeds.

The manifest records the scheme (``STREAMS_SCHEME``) in its format notes.
"""

from __future__ import annotations

import enum

import numpy as np

#: recorded in the manifest: how the per-consumer seeds were derived
STREAMS_SCHEME = "numpy-seedsequence-v1: SeedSequence(seed, spawn_key=(update, purpose)).generate_state(2, uint64)[0] >> (64 - bits), bits 63 (32 for the global RNG)"


class Purpose(enum.IntEnum):
    """The consumers of randomness; the values are part of the scheme and never change."""

    DATA_ORDER = 1  #: the training loader's shuffle
    MEMORY_INSERT = 2  #: the memory policy's decisions (reservoir draws)
    MEMORY_SAMPLE = 3  #: replay draws
    COMPONENTS = 4  #: component hooks (CLS-ER's coin flips, shrink-and-perturb's noise)
    GLOBAL = 5  #: torch's global RNG: model initialisation in the update, dropout
    SHARED = 6  #: the stream every data-parallel rank shares
    COMPONENT_COINS = 7  #: component hooks' Python-level coin flips (no tensor read back per step)
    HOLDOUT = 8  #: which samples of a chunk a gate holds out of training
    REFIT_ORDER = 9  #: a refit's loader shuffle over the memory (retentive.updaters.refit)
    REFIT = 10  #: torch's global RNG during a refit (dropout)


def stream_seed(seed: int, update: int, purpose: Purpose, bits: int = 63) -> int:
    """A ``bits``-bit seed for ``purpose`` in update ``update`` (0-based) of a run seeded ``seed``.

    Seeds for NumPy's and Python's global generators (``pl.seed_everything``) need ``bits=32``.
    """
    if seed < 0 or update < 0:
        raise ValueError(f"seed and update must be >= 0, got seed={seed}, update={update}")
    sequence = np.random.SeedSequence(int(seed), spawn_key=(int(update), int(purpose)))
    return int(sequence.generate_state(2, np.uint64)[0]) >> (64 - bits)


def memory_seeds(seed: int, update: int) -> tuple[int, int]:
    """The memory's ``(insertion, replay)`` seeds for one update."""
    return stream_seed(seed, update, Purpose.MEMORY_INSERT), stream_seed(seed, update, Purpose.MEMORY_SAMPLE)
