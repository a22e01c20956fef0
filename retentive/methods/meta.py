"""Meta-learning replay: MER (Reptile across memory draws) and online meta-learning (MAML + ER)."""

from retentive.methods.registry import MethodSpec, register

_UPDATERS = "retentive.updaters.meta"

register(
    MethodSpec(
        "mer",
        f"{_UPDATERS}.MetaExperienceReplayModelUpdater",
        "experience replay whose every step is a Reptile meta-update across memory draws",
        configs=("mer",),
    )
)
register(
    MethodSpec(
        "online-meta-learning",
        f"{_UPDATERS}.OnlineMetaLearningModelUpdater",
        "MAML's inner loop on each current batch, then an outer ER update",
        configs=("online_meta_learning",),
    )
)
