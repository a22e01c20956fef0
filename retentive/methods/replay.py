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
    paper="Chaudhry et al., 2019: On Tiny Episodic Memories in Continual Learning (arXiv:1902.10486)",
)
method(
    "der",
    "DarkExperienceReplayModelUpdater",
    "DER/DER++: match the logits stored with each memory sample (alpha), plus its label (beta)",
    renate_name="DER",
    aliases=("der++",),
    components=("LogitMSE",),
    renate_import=("LogitMSE", "MemoryCrossEntropy"),
    paper="Buzzega et al., NeurIPS 2020: Dark Experience for General Continual Learning: a Strong, Simple Baseline (arXiv:2004.07211)",
)
method(
    "pod-er",
    "PooledOutputDistillationExperienceReplayModelUpdater",
    "ER plus pooled-output distillation of intermediate features on replayed samples",
    renate_name="POD-ER",
    components=("PooledOutputDistillation",),
    paper="Douillard et al., ECCV 2020: PODNet: Pooled Outputs Distillation for Small-Tasks Incremental Learning (arXiv:2004.13513)",
)
method(
    "cls-er",
    "CLSExperienceReplayModelUpdater",
    "memory cross-entropy plus consistency with the more confident of a fast and a slow EMA model",
    renate_name="CLS-ER",
    components=("CLSConsistency",),
    paper="Arani, Sarfraz & Zonooz, ICLR 2022: Learning Fast, Learning Slow: A General Continual Learning Method based on Complementary Learning System (arXiv:2201.12604)",
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
