"""Experience replay and the methods built on it: ER, DER/DER++, POD-ER, CLS-ER, Super-ER, Offline-ER."""

from retentive.methods.registry import MethodSpec, register

_UPDATERS, _COMPONENTS = "retentive.updaters.replay", "retentive.components"

register(
    MethodSpec(
        "er",
        f"{_UPDATERS}.ExperienceReplayModelUpdater",
        "the task loss on new data plus alpha x the task loss on replayed memory",
        renate_name="ER",
        configs=("er", "er_class_balanced", "er_ring_buffer"),
        components=(f"{_COMPONENTS}.MemoryCrossEntropy",),
        renate_import=("MemoryCrossEntropy",),
    )
)
register(
    MethodSpec(
        "der",
        f"{_UPDATERS}.DarkExperienceReplayModelUpdater",
        "DER/DER++: match the logits stored with each memory sample (alpha), plus its label (beta)",
        renate_name="DER",
        aliases=("der++",),
        configs=("der",),
        components=(f"{_COMPONENTS}.LogitMSE",),
        renate_import=("LogitMSE", "MemoryCrossEntropy"),
    )
)
register(
    MethodSpec(
        "pod-er",
        f"{_UPDATERS}.PooledOutputDistillationExperienceReplayModelUpdater",
        "ER plus pooled-output distillation of intermediate features on replayed samples",
        renate_name="POD-ER",
        configs=("pod_er",),
        components=(f"{_COMPONENTS}.PooledOutputDistillation",),
    )
)
register(
    MethodSpec(
        "cls-er",
        f"{_UPDATERS}.CLSExperienceReplayModelUpdater",
        "memory cross-entropy plus consistency with the more confident of a fast and a slow EMA model",
        renate_name="CLS-ER",
        configs=("cls_er",),
        components=(f"{_COMPONENTS}.CLSConsistency",),
    )
)
register(
    MethodSpec(
        "super-er",
        f"{_UPDATERS}.SuperExperienceReplayModelUpdater",
        "DER++, CLS-ER's consistency, POD and shrink-and-perturb together",
        renate_name="Super-ER",
        configs=("super_er",),
        components=(f"{_COMPONENTS}.ShrinkAndPerturb",),
    )
)
register(
    MethodSpec(
        "offline-er",
        f"{_UPDATERS}.OfflineExperienceReplayModelUpdater",
        "the memory is filled with the whole chunk when an update ends; each step mixes new and memory losses",
        renate_name="Offline-ER",
        configs=("offline_er",),
        memory_insertion="update_end",
    )
)
