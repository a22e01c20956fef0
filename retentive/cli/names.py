"""The names the command line offers as choices, listed without importing what they name.

``retentive --help`` and every usage error must answer without torch or Lightning, so the parsers
read these lists; ``tests/unit/test_cli_layout.py`` checks that they equal the registries they mirror
(:data:`retentive.benchmarking.scenarios.SCENARIOS`, :data:`~retentive.benchmarking.orders.ORDERS`,
:data:`~retentive.benchmarking.runner.KEEP_STATES`).
"""

from __future__ import annotations

SCENARIOS = ("mnist-data-inc", "mnist-iid", "perm-mnist", "rot-mnist", "seq-cifar10", "seq-mnist", "seq-mnist-til")
ORDERS = ("given", "easy-hard", "hard-easy", "random")
KEEP_STATES = ("all", "last", "none")
