"""iCaRL: herding exemplars, distillation and the nearest-mean-of-exemplars classifier."""

from retentive.methods.registry import MethodSpec, register

_COMPONENTS = "retentive.components"

register(
    MethodSpec(
        "icarl",
        "retentive.updaters.icarl.ICaRLModelUpdater",
        "herding exemplars, distillation, and the nearest-mean-of-exemplars classifier",
        renate_name="Avalanche-iCaRL",
        configs=("icarl",),
        components=(f"{_COMPONENTS}.ICaRL", f"{_COMPONENTS}.NearestMeanOfExemplars", f"{_COMPONENTS}.icarl_classifier"),
        memory_policy="herding",
        memory_insertion="update_end",
    )
)
