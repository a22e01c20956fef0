"""Continual-learning methods: the registry (:mod:`.registry`) and one spec module per method family.

Every module here but ``registry`` is imported by discovery and registers its methods' specs; it
imports neither torch nor Lightning (the classes are named by import path), so ``import
retentive`` stays light. A method from outside the package calls :func:`register` from its own
module, or names that module in the ``retentive.methods`` entry point group.
"""

from retentive.methods.registry import (
    ENTRY_POINT_GROUP,
    MethodSpec,
    all_methods,
    discover,
    find,
    get,
    method_table,
    register,
    unregister,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "MethodSpec",
    "all_methods",
    "discover",
    "find",
    "get",
    "method_table",
    "register",
    "unregister",
]
