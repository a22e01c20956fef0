"""Prompt methods on a frozen vision transformer: L2P, L2P with replay, and S-Prompts."""

from retentive.methods.registry import family

method = family("retentive.updaters.prompts")
_VIT = "retentive.models.vit.VisionTransformer"

method(
    "l2p",
    "LearningToPromptModelUpdater",
    "learned prompts chosen by key-query match prepended to a frozen transformer's input",
    renate_name="LearningToPrompt",
    components=("PromptKeyQueryLoss",),
    exports=(_VIT, "retentive.models.l2p.LearningToPromptTransformer"),
    memory_policy=None,
    paper="Wang et al., CVPR 2022: Learning to Prompt for Continual Learning (arXiv:2112.08654)",
)
method(
    "l2p-replay",
    "LearningToPromptReplayModelUpdater",
    "L2P with Offline-ER replay: the prompt loss on new data and the task loss on memory",
    renate_name="LearningToPromptReplay",
    memory_insertion="update_end",
    paper="Wang et al., CVPR 2022: Learning to Prompt for Continual Learning (arXiv:2112.08654)",
)
method(
    "speft",
    "SPeftModelUpdater",
    "S-Prompts: one prompt set and head per task, chosen at test time by the nearest task prototype",
    renate_name="SPeft",
    components=("TaskPrototypes",),
    exports=(_VIT, "retentive.models.sprompts.SPromptTransformer"),
    memory_policy=None,
    paper="Wang, Huang & Hong, NeurIPS 2022: S-Prompts Learning with Pre-trained Transformers: An Occam's Razor for Domain Incremental Learning",
)
