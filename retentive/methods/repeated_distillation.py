"""Repeated distillation: an expert per chunk, distilled with the previous model over the memory."""

from retentive.methods.registry import MethodSpec, register

register(
    MethodSpec(
        "repeated-distillation",
        "retentive.updaters.repeated_distillation.RepeatedDistillationModelUpdater",
        "train an expert on the chunk, then distil it and the previous model into a fresh model over the memory",
        renate_name="RD",
        configs=("repeated_distillation",),
        memory_insertion="update_end",
    )
)
