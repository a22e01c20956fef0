"""Replay memory: preallocated tensor storage and the policies that fill it."""

from retentive.memory.generative import GenerativeMemory, VariationalAutoencoder
from retentive.memory.buffer import CORE_KEYS, MemoryBatch, ReplayBuffer
from retentive.memory.policies import (
    ClassBalancedReservoirPolicy,
    GreedyClassBalancedPolicy,
    InsertionPolicy,
    ReservoirPolicy,
    RingBufferPolicy,
    policy_from_name,
)
from retentive.memory.unbounded import UnboundedBuffer
from retentive.memory.selection_policies import ForgettingPolicy, GradientDiversityPolicy, HerdingPolicy, KCenterPolicy
from retentive.memory.update_end import ChunkContext, UpdateEndPolicy, run_update_end

__all__ = [
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
    "ReplayBuffer",
    "ReservoirPolicy",
    "RingBufferPolicy",
    "UnboundedBuffer",
    "UpdateEndPolicy",
    "VariationalAutoencoder",
    "policy_from_name",
    "run_update_end",
]
