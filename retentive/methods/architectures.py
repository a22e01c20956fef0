"""Architecture methods: PackNet (pruned, frozen weights per task) and progressive networks."""

from retentive.methods.registry import MethodSpec, register

_UPDATERS = "retentive.updaters.architectures"

register(
    MethodSpec(
        "packnet",
        f"{_UPDATERS}.PackNetModelUpdater",
        "train a task on the free weights, prune by magnitude, retrain and freeze what is kept",
        configs=("packnet",),
        memory_policy=None,
    )
)
register(
    MethodSpec(
        "progressive",
        f"{_UPDATERS}.ProgressiveNetworkModelUpdater",
        "a new column per task, with lateral connections from the frozen earlier columns",
        configs=("progressive",),
        memory_policy=None,
    )
)
