"""Episodic-memory methods on a task-balanced memory: GEM, A-GEM and Avalanche's ER."""

from retentive.methods.registry import MethodSpec, register

_UPDATERS, _COMPONENTS = "retentive.updaters.episodic", "retentive.components"

register(
    MethodSpec(
        "gem",
        f"{_UPDATERS}.GradientEpisodicMemoryModelUpdater",
        "each step's gradient is projected so that no earlier task's memory loss increases",
        configs=("gem",),
        components=(f"{_COMPONENTS}.GradientEpisodicMemory",),
        memory_policy="task_balanced",
        memory_insertion="update_end",
    )
)
register(
    MethodSpec(
        "agem",
        f"{_UPDATERS}.AveragedGradientEpisodicMemoryModelUpdater",
        "each step's gradient is projected so that the average memory loss does not increase",
        configs=("agem",),
        components=(f"{_COMPONENTS}.AveragedGradientEpisodicMemory",),
        memory_policy="task_balanced",
        memory_insertion="update_end",
    )
)
register(
    MethodSpec(
        "er-avalanche",
        f"{_UPDATERS}.ExperienceReplayAvalancheModelUpdater",
        "Avalanche's replay: a task-balanced memory filled when an update ends, concatenated to each batch",
        renate_name="Avalanche-ER",
        configs=("er_avalanche",),
        memory_policy="task_balanced",
        memory_insertion="update_end",
    )
)
