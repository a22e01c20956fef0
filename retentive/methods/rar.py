"""Retrospective adversarial replay: replayed samples mixed up and perturbed toward other classes."""

from retentive.methods.registry import MethodSpec, register

register(
    MethodSpec(
        "rar",
        "retentive.updaters.rar.RetrospectiveAdversarialReplayModelUpdater",
        "ER whose replayed samples are mixed up and adversarially perturbed toward the nearest other class",
        configs=("rar",),
        components=("retentive.components.AdversarialReplay", "retentive.components.MixupReplay"),
    )
)
