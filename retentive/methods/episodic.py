"""Episodic-memory methods on a task-balanced memory: GEM, A-GEM and Avalanche's ER."""

from retentive.methods.registry import family

method = family("retentive.updaters.episodic", memory_policy="task_balanced", memory_insertion="update_end")

method(
    "gem",
    "GradientEpisodicMemoryModelUpdater",
    "each step's gradient is projected so that no earlier task's memory loss increases",
    components=("GradientEpisodicMemory",),
    paper="Lopez-Paz & Ranzato, NeurIPS 2017: Gradient Episodic Memory for Continual Learning (arXiv:1706.08840)",
)
method(
    "agem",
    "AveragedGradientEpisodicMemoryModelUpdater",
    "each step's gradient is projected so that the average memory loss does not increase",
    components=("AveragedGradientEpisodicMemory",),
    paper="Chaudhry et al., ICLR 2019: Efficient Lifelong Learning with A-GEM (arXiv:1812.00420)",
)
method(
    "er-avalanche",
    "ExperienceReplayAvalancheModelUpdater",
    "Avalanche's replay: a task-balanced memory filled when an update ends, concatenated to each batch",
    renate_name="Avalanche-ER",
    paper="Chaudhry et al., 2019: On Tiny Episodic Memories in Continual Learning (arXiv:1902.10486)",
)
