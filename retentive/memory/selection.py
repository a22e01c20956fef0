"""Update-end memory selection: pure, vectorised functions over feature or gradient matrices.

Each function takes tensors and returns the indices of the rows it keeps; none reads a model,
a memory or a file, so each is tested against hand-computed or brute-force values.

- :func:`class_quotas`: how many samples each class may keep (as balanced as availability allows).
- :func:`herding`: iCaRL's exemplar selection (Rebuffi et al., CVPR 2017, Algorithm 4), for all
  classes at once.
- :func:`k_center_greedy`: the greedy farthest-point coreset (Sener & Savarese, ICLR 2018,
  Algorithm 1), a 2-approximation of the k-center radius.
- :func:`per_sample_gradients`: the gradient of the loss of each sample, by ``torch.func``
  (``functional_call`` + ``vmap`` + ``grad``), without a Python loop over samples.
- :func:`forgetting_events`/:func:`forgetting_counts`: Toneva et al. (ICLR 2019) forgetting
  events, transitions from correct to wrong between consecutive evaluations of a sample.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from retentive.data import nested
from retentive.models.protocol import takes_task_ids


def class_quotas(available: Tensor, capacity: int) -> Tensor:
    """Per-class budgets summing to ``min(capacity, available.sum())``, as equal as possible.

    Water-filling: every class gets ``q`` or ``q + 1`` slots, except classes with fewer than
    that many samples, which keep all of theirs; their unused share goes to the others. The
    ``+1`` remainders go to the lowest class indices, so the result is deterministic.
    """
    available = available.to(torch.int64)
    quotas = torch.zeros_like(available)
    remaining = int(min(capacity, int(available.sum())))
    open_ = available > 0
    while remaining > 0 and bool(open_.any()):
        k = int(open_.sum())
        share = remaining // k
        room = available - quotas
        if share == 0:  # fewer slots left than open classes: one each to the lowest indices
            idx = open_.nonzero().squeeze(1)[:remaining]
            quotas[idx] += 1
            break
        give = torch.where(open_, torch.minimum(room, torch.full_like(room, share)), torch.zeros_like(room))
        quotas += give
        remaining -= int(give.sum())
        open_ = open_ & (available > quotas)
    return quotas


def _padded_by_class(x: Tensor, labels: Tensor, counts: Tensor, n_max: int) -> tuple[Tensor, Tensor]:
    """``x``'s rows grouped by class into ``(classes, n_max, d)`` (zero-padded), and the row index
    of each entry (``-1`` for padding)."""
    classes = len(counts)
    order = torch.argsort(labels, stable=True)  # order[start_c : start_c + count_c]: class c's rows
    start = torch.cumsum(counts, 0) - counts
    rank = torch.arange(len(labels), device=labels.device) - start.to(labels.device)[labels[order]]
    padded = x.new_zeros(classes, n_max, x.shape[1])
    padded[labels[order], rank] = x[order]
    index = torch.full((classes, n_max), -1, dtype=torch.int64, device=x.device)
    index[labels[order], rank] = order
    return padded, index


def herding(features: Tensor, labels: Tensor, quotas: Tensor, normalize: bool = True) -> Tensor:
    """iCaRL herding, per class: the rows whose running mean stays closest to the class mean.

    For class ``c`` with mean ``mu_c`` of its features (each L2-normalised, as in iCaRL), the ``k``-th
    exemplar is ``argmin_x ||mu_c - (x + sum_{j<k} p_j) / k||`` over the rows not yet chosen.
    All classes are herded together: one padded ``(classes, n_max, d)`` tensor, one batched
    matrix-vector product per exemplar rank, so the Python loop runs ``max(quotas)`` times.

    Args:
        features: ``(n, d)`` features of the candidates.
        labels: ``(n,)`` class of each row, in ``[0, len(quotas))``.
        quotas: ``(classes,)`` exemplars to pick per class (at most that class's count).
    Returns:
        The chosen row indices, class by class (ascending), each class in herding order (so a
        prefix of a class's exemplars is its best smaller exemplar set, iCaRL's reduction rule).

    Memory: the padded copy, ``classes * n_max * d`` floats, plus ``O(classes * n_max)``.
    """
    if features.dim() != 2 or labels.shape != features.shape[:1]:
        raise ValueError(
            f"herding needs (n, d) features and (n,) labels, got {tuple(features.shape)} and {tuple(labels.shape)}"
        )
    quotas = quotas.to(torch.int64).cpu()
    labels = labels.to(torch.int64)
    counts = torch.bincount(labels.cpu(), minlength=len(quotas))
    if len(counts) > len(quotas) or bool((quotas > counts).any()):
        raise ValueError(f"herding quotas {quotas.tolist()} exceed the class counts {counts.tolist()}")
    x = features if features.dtype == torch.float64 else features.float()
    if normalize:
        x = nn.functional.normalize(x, dim=1)
    classes, n_max = len(quotas), int(counts.max()) if counts.numel() else 0
    if int(quotas.sum()) == 0:
        return torch.zeros(0, dtype=torch.int64, device=features.device)
    padded, index = _padded_by_class(x, labels, counts, n_max)
    valid = index >= 0
    # the plain mean of the (normalised) features, as in iCaRL's ConstructExemplarSet (only its
    # nearest-mean classifier renormalises the means)
    mu = padded.sum(1) / counts.clamp_min(1).to(x)[:, None]  # (classes, d)
    norms = padded.pow(2).sum(2)  # (classes, n_max)
    running = torch.zeros_like(mu)
    chosen = torch.full((classes, int(quotas.max())), -1, dtype=torch.int64, device=x.device)
    active = valid.clone()
    dev_quotas = quotas.to(x.device)
    for k in range(1, int(quotas.max()) + 1):
        # ||mu - (S + x)/k||^2 = const - 2 (mu - S/k).x / k + ||x||^2 / k^2
        a = mu - running / k
        score = norms / k - 2.0 * torch.bmm(padded, a.unsqueeze(2)).squeeze(2)
        score = score.masked_fill(~active, float("inf"))
        pick = score.argmin(1)  # (classes,)
        take = dev_quotas >= k
        rows = torch.arange(classes, device=x.device)
        chosen[:, k - 1] = torch.where(take, index[rows, pick], chosen[:, k - 1])
        running = running + torch.where(take[:, None], padded[rows, pick], torch.zeros_like(running))
        active[rows[take], pick[take]] = False
    return chosen[chosen >= 0]


def k_center_greedy(features: Tensor, k: int, centers: Tensor | None = None) -> Tensor:
    """Greedy k-center (Sener & Savarese 2018): repeatedly add the row farthest from the chosen set.

    Starts from ``centers`` (row indices already chosen) or, if none, from the row closest to the
    mean of all rows (a deterministic start; the 2-approximation holds for any start). The
    result's covering radius ``max_i min_c ||x_i - x_c||`` is at most twice the optimum.

    Returns ``min(k, n)`` distinct row indices (``centers`` first, then in the order chosen).
    Memory: the ``(n, d)`` features and ``O(n)`` distances; time ``O(n * d * k)``, as ``k``
    matrix-vector products.
    """
    if features.dim() != 2:
        raise ValueError(f"k-center needs (n, d) features, got shape {tuple(features.shape)}")
    n = int(features.shape[0])
    k = min(int(k), n)
    x = features if features.dtype == torch.float64 else features.float()
    sq = x.pow(2).sum(1)
    chosen = torch.zeros(max(k, 0), dtype=torch.int64, device=x.device)
    if k <= 0:
        return chosen
    if centers is None or centers.numel() == 0:
        first = (x - x.mean(0)).pow(2).sum(1).argmin().reshape(1)
    else:
        first = centers.to(x.device, torch.int64).unique(sorted=False)
    m = min(int(first.numel()), k)
    chosen[:m] = first[:m]
    # squared distances of every row to its nearest chosen centre
    nearest = (sq[:, None] - 2.0 * x @ x[first].T + sq[first][None, :]).clamp_min(0).min(1).values
    nearest[first] = -1.0
    for i in range(m, k):
        u = nearest.argmax()
        chosen[i] = u
        nearest = torch.minimum(nearest, (sq - 2.0 * (x @ x[u]) + sq[u]).clamp_min_(0))
        nearest[u] = -1.0  # chosen rows stay at -1 (the minimum keeps it): never chosen twice
    return chosen


def covering_radius(features: Tensor, centers: Tensor) -> float:
    """``max_i min_c ||x_i - x_c||``: how far the farthest row lies from its nearest centre."""
    return float(torch.cdist(features.double(), features[centers].double()).min(1).values.max())


def last_parameters(model: nn.Module) -> list[str]:
    """The names of the trainable parameters of the last submodule that owns any (the classifier)."""
    last: list[str] = []
    for name, module in model.named_modules():
        own = [f"{name}.{p}" if name else p for p, q in module.named_parameters(recurse=False) if q.requires_grad]
        if own:
            last = own
    return last


def per_sample_gradients(
    model: nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    inputs: Tensor,
    targets: Tensor,
    parameters: Sequence[str] | None = None,
    task_ids: Tensor | None = None,
) -> Tensor:
    """``(batch, D)``: the flattened gradient of ``loss_fn`` on each sample alone, for ``parameters``.

    ``torch.func.grad`` of the one-sample loss, ``vmap``-ed over the batch, with the model run by
    ``functional_call``: one batched backward, no loop over samples. ``parameters`` are names as
    in ``model.named_parameters()`` (default: all trainable ones); the rest stay fixed. Run the
    model in eval mode (batch norm must not use batch statistics of a single sample).
    ``task_ids`` are passed to a task-routed model (``takes_task_ids``).
    """
    from torch.func import functional_call, grad, vmap

    named = dict(model.named_parameters())
    names = list(parameters) if parameters is not None else [n for n, p in named.items() if p.requires_grad]
    missing = [n for n in names if n not in named]
    if missing or not names:
        raise ValueError(
            f"per-sample gradients need parameters of the model; {missing or names} are not among {list(named)}"
        )
    params = {n: named[n].detach() for n in names}
    routed = takes_task_ids(model)

    def one(p: dict[str, Tensor], x: Tensor, y: Tensor, t: Tensor) -> Tensor:
        one_x = nested.tree_map(lambda v: v.unsqueeze(0), x)  # a tensor or nested inputs
        args = (one_x, t.unsqueeze(0)) if routed else (one_x,)
        out = functional_call(model, p, args, strict=False)
        loss = loss_fn(out, y.unsqueeze(0))
        return loss.mean() if loss.dim() else loss

    t = task_ids if task_ids is not None else torch.zeros_like(targets)
    grads = vmap(grad(one), in_dims=(None, 0, 0, 0), randomness="different")(params, inputs, targets, t)
    return torch.cat([grads[n].reshape(targets.shape[0], -1) for n in names], dim=1)


def forgetting_events(previous: Tensor, current: Tensor) -> Tensor:
    """Boolean per sample: correct at the previous evaluation and wrong at this one."""
    return previous.bool() & ~current.bool()


def forgetting_counts(correct: Tensor) -> Tensor:
    """Toneva et al.'s forgetting count per sample from a ``(evaluations, n)`` correctness history.

    The number of correct-to-wrong transitions between consecutive evaluations. Samples never
    correct have count 0 here; :func:`forgetting_scores` ranks them as Toneva et al. do.
    """
    if correct.dim() != 2:
        raise ValueError(f"a correctness history is (evaluations, samples), got shape {tuple(correct.shape)}")
    c = correct.bool()
    return forgetting_events(c[:-1], c[1:]).sum(0).to(torch.int64)


def forgetting_scores(counts: Tensor, learned: Tensor) -> Tensor:
    """The ranking score: the forgetting count, and infinity for samples never learned.

    Toneva et al. (2019, section 3) count a sample that is never classified correctly as
    forgotten infinitely often: it is among the first to keep.
    """
    return torch.where(learned.bool(), counts.double(), torch.full_like(counts, float("inf"), dtype=torch.float64))
