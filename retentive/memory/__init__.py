"""Replay memory: preallocated tensor storage and the policies that fill it."""

from retentive.memory.buffer import CORE_KEYS, MemoryBatch, ReplayBuffer
from retentive.memory.policies import GreedyClassBalancedPolicy, InsertionPolicy, ReservoirPolicy, policy_from_name
from retentive.memory.unbounded import UnboundedBuffer

__all__ = [
    "CORE_KEYS",
    "GreedyClassBalancedPolicy",
    "InsertionPolicy",
    "MemoryBatch",
    "ReplayBuffer",
    "ReservoirPolicy",
    "UnboundedBuffer",
    "policy_from_name",
]
