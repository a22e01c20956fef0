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
)
method(
    "l2p-replay",
    "LearningToPromptReplayModelUpdater",
    "L2P with Offline-ER replay: the prompt loss on new data and the task loss on memory",
    renate_name="LearningToPromptReplay",
    memory_insertion="update_end",
)
method(
    "speft",
    "SPeftModelUpdater",
    "S-Prompts: one prompt set and head per task, chosen at test time by the nearest task prototype",
    renate_name="SPeft",
    components=("TaskPrototypes",),
    exports=(_VIT, "retentive.models.sprompts.SPromptTransformer"),
    memory_policy=None,
)
