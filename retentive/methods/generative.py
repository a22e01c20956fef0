"""Deep generative replay: a VAE learned beside the classifier replays samples; none is kept."""

from retentive.methods.registry import MethodSpec, register

register(
    MethodSpec(
        "generative-replay",
        "retentive.updaters.generative.GenerativeReplayModelUpdater",
        "a VAE generator learned next to the classifier replays samples; no real sample is kept",
        configs=("generative_replay",),
        exports=("retentive.memory.generative.VariationalAutoencoder",),
        memory_policy=None,
    )
)
