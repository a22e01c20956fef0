"""Deep generative replay: a VAE learned beside the classifier replays samples; none is kept."""

from retentive.methods.registry import family

family("retentive.updaters.generative")(
    "generative-replay",
    "GenerativeReplayModelUpdater",
    "a VAE generator learned next to the classifier replays samples; no real sample is kept",
    exports=("retentive.memory.generative.VariationalAutoencoder",),
    memory_policy=None,
    paper="Shin et al., NeurIPS 2017: Continual Learning with Deep Generative Replay (arXiv:1705.08690)",
)
