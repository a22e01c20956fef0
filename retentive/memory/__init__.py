"""Replay memory: preallocated tensor storage and the policies that fill it."""

from retentive.memory.buffer import CORE_KEYS, MemoryBatch, ReplayBuffer
from retentive.memory.policies import InsertionPolicy, ReservoirPolicy, policy_from_name

__all__ = ["CORE_KEYS", "InsertionPolicy", "MemoryBatch", "ReplayBuffer", "ReservoirPolicy", "policy_from_name"]
