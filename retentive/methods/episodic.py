"""Episodic-memory methods on a task-balanced memory: GEM, A-GEM and Avalanche's ER."""

from retentive.methods.registry import family

method = family("retentive.updaters.episodic", memory_policy="task_balanced", memory_insertion="update_end")

method(
    "gem",
    "GradientEpisodicMemoryModelUpdater",
    "each step's gradient is projected so that no earlier task's memory loss increases",
    components=("GradientEpisodicMemory",),
)
method(
    "agem",
    "AveragedGradientEpisodicMemoryModelUpdater",
    "each step's gradient is projected so that the average memory loss does not increase",
    components=("AveragedGradientEpisodicMemory",),
)
method(
    "er-avalanche",
    "ExperienceReplayAvalancheModelUpdater",
    "Avalanche's replay: a task-balanced memory filled when an update ends, concatenated to each batch",
    renate_name="Avalanche-ER",
)
