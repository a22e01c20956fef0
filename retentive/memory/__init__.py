"""Replay memory: preallocated tensor storage and the policies that fill it."""

from retentive.memory.generative import GenerativeMemory, VariationalAutoencoder
from retentive.memory.buffer import CORE_KEYS, MemoryBatch, ReplayBuffer
from retentive.memory.policies import GreedyClassBalancedPolicy, InsertionPolicy, ReservoirPolicy, policy_from_name
from retentive.memory.unbounded import UnboundedBuffer

__all__ = [
    "CORE_KEYS",
    "GenerativeMemory",
    "GreedyClassBalancedPolicy",
    "InsertionPolicy",
    "MemoryBatch",
    "ReplayBuffer",
    "ReservoirPolicy",
    "UnboundedBuffer",
    "VariationalAutoencoder",
    "policy_from_name",
]
