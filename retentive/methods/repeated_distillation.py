"""Repeated distillation: an expert per chunk, distilled with the previous model over the memory."""

from retentive.methods.registry import family

family("retentive.updaters.repeated_distillation")(
    "repeated-distillation",
    "RepeatedDistillationModelUpdater",
    "train an expert on the chunk, then distil it and the previous model into a fresh model over the memory",
    renate_name="RD",
    memory_insertion="update_end",
)
