"""iCaRL: herding exemplars, distillation and the nearest-mean-of-exemplars classifier."""

from retentive.methods.registry import family

family("retentive.updaters.icarl")(
    "icarl",
    "ICaRLModelUpdater",
    "herding exemplars, distillation, and the nearest-mean-of-exemplars classifier",
    renate_name="Avalanche-iCaRL",
    components=("ICaRL", "NearestMeanOfExemplars", "icarl_classifier"),
    memory_policy="herding",
    memory_insertion="update_end",
    paper="Rebuffi et al., CVPR 2017: iCaRL: Incremental Classifier and Representation Learning (arXiv:1611.07725)",
)
