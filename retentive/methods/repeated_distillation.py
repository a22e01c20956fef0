"""Repeated distillation: an expert per chunk, distilled with the previous model over the memory."""

from retentive.methods.registry import family

family("retentive.updaters.repeated_distillation")(
    "repeated-distillation",
    "RepeatedDistillationModelUpdater",
    "train an expert on the chunk, then distil it and the previous model into a fresh model over the memory",
    renate_name="RD",
    memory_insertion="update_end",
    paper="Zhang et al., WACV 2020: Class-incremental Learning via Deep Model Consolidation (arXiv:1903.07864)",
)
