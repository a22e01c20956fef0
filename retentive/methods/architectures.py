"""Architecture methods: PackNet (pruned, frozen weights per task) and progressive networks."""

from retentive.methods.registry import family

method = family("retentive.updaters.architectures", memory_policy=None)

method(
    "packnet",
    "PackNetModelUpdater",
    "train a task on the free weights, prune by magnitude, retrain and freeze what is kept",
)
method(
    "progressive",
    "ProgressiveNetworkModelUpdater",
    "a new column per task, with lateral connections from the frozen earlier columns",
)
