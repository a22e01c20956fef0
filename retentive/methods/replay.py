"""Experience replay and the methods built on it: ER, DER/DER++, POD-ER, CLS-ER, Super-ER, Offline-ER."""

from retentive.methods.registry import family

method = family("retentive.updaters.replay")

method(
    "er",
    "ExperienceReplayModelUpdater",
    "the task loss on new data plus alpha x the task loss on replayed memory",
    renate_name="ER",
    configs=("er", "er_class_balanced", "er_ring_buffer"),
    components=("MemoryCrossEntropy",),
    renate_import=("MemoryCrossEntropy",),
)
method(
    "der",
    "DarkExperienceReplayModelUpdater",
    "DER/DER++: match the logits stored with each memory sample (alpha), plus its label (beta)",
    renate_name="DER",
    aliases=("der++",),
    components=("LogitMSE",),
    renate_import=("LogitMSE", "MemoryCrossEntropy"),
)
method(
    "pod-er",
    "PooledOutputDistillationExperienceReplayModelUpdater",
    "ER plus pooled-output distillation of intermediate features on replayed samples",
    renate_name="POD-ER",
    components=("PooledOutputDistillation",),
)
method(
    "cls-er",
    "CLSExperienceReplayModelUpdater",
    "memory cross-entropy plus consistency with the more confident of a fast and a slow EMA model",
    renate_name="CLS-ER",
    components=("CLSConsistency",),
)
method(
    "super-er",
    "SuperExperienceReplayModelUpdater",
    "DER++, CLS-ER's consistency, POD and shrink-and-perturb together",
    renate_name="Super-ER",
    components=("ShrinkAndPerturb",),
)
method(
    "offline-er",
    "OfflineExperienceReplayModelUpdater",
    "the memory is filled with the whole chunk when an update ends; each step mixes new and memory losses",
    renate_name="Offline-ER",
    memory_insertion="update_end",
)
