"""Retrospective adversarial replay: replayed samples mixed up and perturbed toward other classes."""

from retentive.methods.registry import family

family("retentive.updaters.rar")(
    "rar",
    "RetrospectiveAdversarialReplayModelUpdater",
    "ER whose replayed samples are mixed up and adversarially perturbed toward the nearest other class",
    components=("AdversarialReplay", "MixupReplay"),
    paper="Kumari et al., NeurIPS 2022: Retrospective Adversarial Replay for Continual Learning",
)
