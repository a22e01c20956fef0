"""Baselines: fine-tuning (the lower bound), GDumb and joint training (the upper bound)."""

from retentive.methods.registry import MethodSpec, register

_UPDATERS = "retentive.updaters.baselines"

register(
    MethodSpec(
        "fine-tuning",
        f"{_UPDATERS}.FineTuningModelUpdater",
        "plain training on each chunk: no memory, no extra loss",
        renate_name="FineTuning",
        configs=("fine_tuning",),
        memory_policy=None,
        renate_import=(),
    )
)
register(
    MethodSpec(
        "gdumb",
        f"{_UPDATERS}.GDumbModelUpdater",
        "a greedy class-balanced memory; the model is re-initialised and trained on the memory alone",
        renate_name="GDumb",
        configs=("gdumb",),
        memory_policy="greedy_class_balanced",
        memory_insertion="update_end",
    )
)
register(
    MethodSpec(
        "joint",
        f"{_UPDATERS}.JointModelUpdater",
        "the upper bound: re-initialise and train on every chunk seen so far",
        renate_name="Joint",
        configs=("joint",),
        memory_policy="unbounded",
        memory_insertion="update_end",
    )
)
