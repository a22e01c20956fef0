"""Meta-learning replay: MER (Reptile across memory draws) and online meta-learning (MAML + ER)."""

from retentive.methods.registry import family

method = family("retentive.updaters.meta")

method(
    "mer",
    "MetaExperienceReplayModelUpdater",
    "experience replay whose every step is a Reptile meta-update across memory draws",
)
method(
    "online-meta-learning",
    "OnlineMetaLearningModelUpdater",
    "MAML's inner loop on each current batch, then an outer ER update",
)
