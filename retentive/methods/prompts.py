"""Prompt methods on a frozen vision transformer: L2P, L2P with replay, and S-Prompts."""

from retentive.methods.registry import MethodSpec, register

_UPDATERS, _COMPONENTS = "retentive.updaters.prompts", "retentive.components"
_VIT = "retentive.models.vit.VisionTransformer"

register(
    MethodSpec(
        "l2p",
        f"{_UPDATERS}.LearningToPromptModelUpdater",
        "learned prompts chosen by key-query match prepended to a frozen transformer's input",
        renate_name="LearningToPrompt",
        configs=("l2p",),
        components=(f"{_COMPONENTS}.PromptKeyQueryLoss",),
        exports=(_VIT, "retentive.models.l2p.LearningToPromptTransformer"),
        memory_policy=None,
    )
)
register(
    MethodSpec(
        "l2p-replay",
        f"{_UPDATERS}.LearningToPromptReplayModelUpdater",
        "L2P with Offline-ER replay: the prompt loss on new data and the task loss on memory",
        renate_name="LearningToPromptReplay",
        configs=("l2p_replay",),
        memory_insertion="update_end",
    )
)
register(
    MethodSpec(
        "speft",
        f"{_UPDATERS}.SPeftModelUpdater",
        "S-Prompts: one prompt set and head per task, chosen at test time by the nearest task prototype",
        renate_name="SPeft",
        configs=("speft",),
        components=(f"{_COMPONENTS}.TaskPrototypes",),
        exports=(_VIT, "retentive.models.sprompts.SPromptTransformer"),
        memory_policy=None,
    )
)
