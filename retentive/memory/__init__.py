"""Replay memory: the declared interface (:mod:`~retentive.memory.protocol`), its backends (tensor
storage: :class:`ReplayBuffer`, :class:`UnboundedBuffer`, whose rows reside on the device, grown or
whole, or in memory-mapped files, see :mod:`~retentive.memory.backends`; a generator:
:class:`GenerativeMemory`), and the policies that fill them."""

from retentive.memory.buffer import CORE_KEYS, MemoryBatch, ReplayBuffer
from retentive.memory.context import Batch, ChunkContext, UpdateContext, chunk_context
from retentive.memory.generative import GenerativeMemory, VariationalAutoencoder
from retentive.memory.policies import (
    ClassBalancedReservoirPolicy,
    GreedyClassBalancedPolicy,
    InsertionPolicy,
    ReservoirPolicy,
    RingBufferPolicy,
    policy_from_name,
)
from retentive.memory.protocol import Offer, PolicyDefaults, ReplayMemory, SlotPolicy
from retentive.memory.selection_policies import ForgettingPolicy, GradientDiversityPolicy, HerdingPolicy, KCenterPolicy
from retentive.memory.unbounded import UnboundedBuffer
from retentive.memory.update_end import UpdateEndPolicy, run_update_end

__all__ = [
    "Batch",
    "CORE_KEYS",
    "ChunkContext",
    "ClassBalancedReservoirPolicy",
    "ForgettingPolicy",
    "GradientDiversityPolicy",
    "GenerativeMemory",
    "GreedyClassBalancedPolicy",
    "HerdingPolicy",
    "InsertionPolicy",
    "KCenterPolicy",
    "MemoryBatch",
    "Offer",
    "PolicyDefaults",
    "ReplayBuffer",
    "ReplayMemory",
    "ReservoirPolicy",
    "RingBufferPolicy",
    "SlotPolicy",
    "UnboundedBuffer",
    "UpdateContext",
    "UpdateEndPolicy",
    "VariationalAutoencoder",
    "chunk_context",
    "policy_from_name",
    "run_update_end",
]
