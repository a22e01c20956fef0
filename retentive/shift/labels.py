"""Label shift: Pearson's chi-square test of homogeneity on class counts.

The reference and the query are the two rows of a 2 x C contingency table of class counts (true
labels of a labelled chunk against the memory's labels; or, for an unlabelled chunk, the model's
predicted classes on both). Classes absent from both are dropped; with C' classes left::

    E_rc = row_r · col_c / N,   X² = Σ (O_rc - E_rc)² / E_rc,   dof = C' - 1,   p = Q(dof/2, X²/2)

with ``Q`` the regularised upper incomplete gamma function (``torch.special.gammaincc``), the
chi-square survival function. Assumptions: samples independent, and expected counts large
enough for the chi-square approximation (Cochran's rule: every ``E_rc >= 5``); ``details`` says
how many expected counts fall below 5, where the p-value is only approximate. Predicted classes
test whether the model's output distribution moved, which reflects a label shift only insofar
as the model's confusion is the same on both sides (the BBSE assumption of Lipton et al., 2018).
"""

from __future__ import annotations

import torch
from torch import Tensor


def class_counts(labels: Tensor, num_classes: int) -> Tensor:
    """``(num_classes,)`` int64 counts of integer ``labels``."""
    if labels.dtype.is_floating_point or labels.dim() != 1:
        raise ValueError(
            f"labels must be a 1-d integer tensor, got shape {tuple(labels.shape)} and dtype {labels.dtype}"
        )
    if labels.numel() and int(labels.min()) < 0:
        raise ValueError(f"labels must be class indices >= 0, got {int(labels.min())}")
    return torch.bincount(labels.long().cpu(), minlength=num_classes)


def chi_square_test(reference_counts: Tensor, query_counts: Tensor) -> tuple[float, float, dict[str, object]]:
    """``(X², p-value, details)`` of the 2 x C table whose rows are the two count vectors."""
    if reference_counts.shape != query_counts.shape or reference_counts.dim() != 1:
        raise ValueError(
            f"expected two count vectors of one length, got shapes {tuple(reference_counts.shape)} and "
            f"{tuple(query_counts.shape)}"
        )
    table = torch.stack([reference_counts, query_counts]).to(torch.float64)
    present = table.sum(dim=0) > 0
    table = table[:, present]
    classes = int(present.sum())
    if classes < 2 or (table.sum(dim=1) == 0).any():  # one class, or an empty row: no contrast to test
        return 0.0, 1.0, {"classes": classes, "dof": 0, "small_expected_counts": 0}
    expected = table.sum(dim=1, keepdim=True) * table.sum(dim=0, keepdim=True) / table.sum()
    statistic = ((table - expected).square() / expected).sum()
    dof = classes - 1
    p_value = torch.special.gammaincc(torch.tensor(dof / 2, dtype=torch.float64), statistic / 2)
    details: dict[str, object] = {"classes": classes, "dof": dof, "small_expected_counts": int((expected < 5).sum())}
    return float(statistic), float(p_value), details
