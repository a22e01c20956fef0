"""Architecture methods: PackNet (pruned, frozen weights per task) and progressive networks."""

from retentive.methods.registry import family

method = family("retentive.updaters.architectures", memory_policy=None)

method(
    "packnet",
    "PackNetModelUpdater",
    "train a task on the free weights, prune by magnitude, retrain and freeze what is kept",
    paper="Mallya & Lazebnik, CVPR 2018: PackNet: Adding Multiple Tasks to a Single Network by Iterative Pruning (arXiv:1711.05769)",
)
method(
    "progressive",
    "ProgressiveNetworkModelUpdater",
    "a new column per task, with lateral connections from the frozen earlier columns",
    paper="Rusu et al., 2016: Progressive Neural Networks (arXiv:1606.04671)",
)
