"""Meta-learning replay: MER (Reptile across memory draws) and online meta-learning (MAML + ER)."""

from retentive.methods.registry import family

method = family("retentive.updaters.meta")

method(
    "mer",
    "MetaExperienceReplayModelUpdater",
    "experience replay whose every step is a Reptile meta-update across memory draws",
    paper="Riemer et al., ICLR 2019: Learning to Learn without Forgetting by Maximizing Transfer and Minimizing Interference (arXiv:1810.11910)",
)
method(
    "online-meta-learning",
    "OnlineMetaLearningModelUpdater",
    "MAML's inner loop on each current batch, then an outer ER update",
)
