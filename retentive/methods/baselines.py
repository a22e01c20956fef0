"""Baselines: fine-tuning (the lower bound), GDumb and joint training (the upper bound)."""

from retentive.methods.registry import family

method = family("retentive.updaters.baselines")

method(
    "fine-tuning",
    "FineTuningModelUpdater",
    "plain training on each chunk: no memory, no extra loss",
    renate_name="FineTuning",
    memory_policy=None,
    renate_import=(),
)
method(
    "gdumb",
    "GDumbModelUpdater",
    "a greedy class-balanced memory; the model is re-initialised and trained on the memory alone",
    renate_name="GDumb",
    memory_policy="greedy_class_balanced",
    memory_insertion="update_end",
    paper="Prabhu, Torr & Dokania, ECCV 2020: GDumb: A Simple Approach that Questions Our Progress in Continual Learning",
)
method(
    "joint",
    "JointModelUpdater",
    "the upper bound: re-initialise and train on every chunk seen so far",
    renate_name="Joint",
    memory_policy="unbounded",
    memory_insertion="update_end",
)
