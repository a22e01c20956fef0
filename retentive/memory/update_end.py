"""Update-end selection: the machinery the herding, k-center, gradient-diversity and forgetting
policies (:mod:`retentive.memory.selection_policies`) share.

These policies keep nothing while an update trains (``select`` accepts no sample, so the memory
replays only earlier chunks, as iCaRL and Avalanche do). When the update ends,
:meth:`UpdateEndPolicy.on_update_end` looks at the whole chunk (every data-parallel rank the
whole chunk, not its shard) plus the current memory, in batches on the training device, chooses
which ``capacity`` samples to keep, and rewrites the memory with them, class by class in the
order chosen. Metadata the components store (``logits``, ``features.<layer>``) is computed for
the new rows in the same pass, in eval mode; kept rows keep theirs.

Memory bound (each policy's docstring refines it): with ``N = len(chunk) + len(memory)``, one
``(N, D)`` float32 matrix of features or gradient sketches on the device, plus one batch of
activations, plus the ``capacity`` chosen rows; the chunk's inputs are never held at once.

The hooks read the one update context, :class:`retentive.memory.context.UpdateContext` (the
Learner builds it; :func:`~retentive.memory.context.chunk_context` builds one from a dataset for
use outside the Learner). Every updater runs the hooks (the Learner calls them beside the
components' and ``ModelUpdater`` attaches the policy when it is built); a policy that nothing
hooks refuses the first insert (:meth:`UpdateEndPolicy.select`) rather than leave the memory silently empty.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from retentive.data import nested
from retentive.memory.buffer import CORE_KEYS
from retentive.memory.context import ChunkContext, UpdateContext, chunk_context
from retentive.memory.identity import IDENTITY_KEYS
from retentive.memory.layout import is_input_key
from retentive.memory.protocol import Offer, ReplayMemory, SlotPolicy
from retentive.models.modes import evaluating
from retentive.models.taps import FeatureTap

__all__ = [
    "ChunkContext",
    "UpdateEndPolicy",
    "all_batches",
    "candidate_features",
    "check_feature_layers",
    "chunk_context",
    "rewrite_memory",
    "run_update_end",
]


def run_update_end(memory: ReplayMemory, ctx: UpdateContext) -> None:
    """Run the memory policy's ``on_update_end(ctx)`` unless the memory is off (the Learner's hook)."""
    if memory.capacity > 0:
        memory.policy.on_update_end(ctx)


# ------------------------------------------------------------------------------------ features
class _Penultimate:
    """Captures the named layers' outputs, or without names the model's feature vector (the one
    rule of :func:`retentive.models.protocol.feature_layer`: its declared layer, else the input of
    the last ``nn.Linear`` called)."""

    def __init__(self, model: nn.Module, layers: Sequence[str] | None) -> None:
        modules = dict(model.named_modules())
        self.tap: FeatureTap | None = None
        self.handles: list[Any] = []
        if layers:
            names = list(dict.fromkeys(layers))
            missing = [n for n in names if n not in modules]
            if missing:
                raise ValueError(
                    f"feature layers {missing} are not submodules of {type(model).__name__}; it has "
                    f"{[n for n in modules if n]}"
                )
            self.handles = [modules[n].register_forward_hook(self._store(n)) for n in names]
        else:
            names = []
            self.tap = FeatureTap(model)
        self.names = names
        self.outputs: dict[str, Tensor] = {}

    def _store(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...], out: Any) -> None:
            if not torch.is_tensor(out):
                raise TypeError(f"feature layer {name!r} gave {type(out).__name__}, expected a Tensor")
            self.outputs[name] = out

        return hook

    def features(self, rows: int | None = None) -> Tensor:
        if self.tap is not None:
            return self.tap.features(rows).detach()
        return torch.cat([self.outputs[n].detach().flatten(1).float() for n in self.names], dim=1)

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        if self.tap is not None:
            self.tap.remove()


def check_feature_layers(model: nn.Module, layers: Sequence[str] | None) -> None:
    """Raise ``ValueError`` now if the feature layers cannot be tapped on ``model``."""
    _Penultimate(model, layers).remove()


def all_batches(ctx: UpdateContext, batch_size: int) -> Iterator[tuple[str, Tensor, Tensor, Tensor]]:
    """The memory (slot order) then the chunk, tagged, on the context's device."""
    device = ctx.device
    for where, batches in (("memory", ctx.memory_batches(batch_size)), ("chunk", ctx.chunk_batches(batch_size))):
        for x, y, t in batches:
            yield (
                where,
                nested.to(x, device),
                torch.as_tensor(y).to(device).long(),
                torch.as_tensor(t).to(device).long(),
            )


def _chunk_only(ctx: UpdateContext, batch_size: int) -> Iterator[tuple[str, Tensor, Tensor, Tensor]]:
    for x, y, t in ctx.chunk_batches(batch_size):
        yield (
            "chunk",
            nested.to(x, ctx.device),
            torch.as_tensor(y).to(ctx.device).long(),
            torch.as_tensor(t).to(ctx.device).long(),
        )


def candidate_features(ctx: UpdateContext, layers: Sequence[str] | None, batch_size: int) -> tuple[Tensor, Tensor, int]:
    """``(features (N, D), targets (N,), memory rows M)`` of memory then chunk, no gradients."""
    taps = _Penultimate(ctx.model, layers)
    feats, targets, m = [], [], 0
    try:
        with evaluating(ctx.model):
            for where, x, y, t in all_batches(ctx, batch_size):
                ctx.forward(x, t)
                feats.append(taps.features(int(y.shape[0])))
                targets.append(y.long())
                m += int(y.shape[0]) if where == "memory" else 0
    finally:
        taps.remove()
    return torch.cat(feats), torch.cat(targets), m


# ------------------------------------------------------------------------------------ rewrite
def _metadata(ctx: UpdateContext, keys: Sequence[str], x: Tensor, t: Tensor) -> dict[str, Tensor]:
    layers = [k[len("features.") :] for k in keys if k.startswith("features.")]
    unknown = [k for k in keys if k != "logits" and not k.startswith("features.")]
    if unknown:
        raise KeyError(
            f"update-end selection cannot produce the memory metadata {unknown}; it makes 'logits' and 'features.<layer>'"
        )
    taps = _Penultimate(ctx.model, layers) if layers else None
    try:
        logits = ctx.forward(x, t)
        out = {"logits": logits.detach().float()} if "logits" in keys else {}
        if taps is not None:
            out.update({f"features.{n}": taps.outputs[n].detach().float() for n in layers})
    finally:
        if taps is not None:
            taps.remove()
    return out


def rewrite_memory(ctx: UpdateContext, chosen: Tensor, memory_rows: int, batch_size: int) -> None:
    """Make the memory hold the union rows ``chosen``, in that order, in slots ``0..len-1``.

    Union row ``i < memory_rows`` is memory slot ``i``; row ``memory_rows + j`` is chunk sample
    ``j``. The chunk is read once more, keeping only the chosen rows (the capacity bounds them);
    the memory's :meth:`~retentive.memory.protocol.ReplayMemory.replace` writes the result.
    """
    memory = ctx.memory
    chosen = chosen.to("cpu", torch.int64)
    if chosen.numel() > memory.capacity or chosen.numel() < len(memory) or chosen.unique().numel() != chosen.numel():
        raise ValueError(
            f"a selection must keep between {len(memory)} and {memory.capacity} distinct rows, got {chosen.numel()}"
        )
    from_memory = chosen < memory_rows
    mem_slots = chosen[from_memory]
    chunk_rows, order = torch.sort(chosen[~from_memory] - memory_rows)  # read in chunk order
    # metadata keys (not the input leaves ``inputs.<path>`` of nested inputs)
    known = (*CORE_KEYS, *IDENTITY_KEYS)
    extra = [k for k in memory.keys if k not in known and not is_input_key(k)] or list(ctx.memory_keys)
    parts: list[dict[str, Any]] = [memory.gather(mem_slots).data] if mem_slots.numel() else []
    offset, pointer = 0, 0
    with evaluating(ctx.model):
        for _, x, y, t in _chunk_only(ctx, batch_size) if chunk_rows.numel() else ():
            b = int(y.shape[0])
            stop = int(torch.searchsorted(chunk_rows, offset + b))
            if stop > pointer:
                local = (chunk_rows[pointer:stop] - offset).to(y.device)
                xs, ts = nested.index(x, local), t[local]
                rows = {"inputs": xs, "targets": y[local], "task_ids": ts, **_metadata(ctx, extra, xs, ts)}
                rows.update(memory.chunk_identity(chunk_rows[pointer:stop]))
                parts.append({k: nested.to(v, memory.device) for k, v in rows.items()})
                pointer = stop
            offset += b
            if pointer == chunk_rows.numel():
                break
    n = int(chosen.numel())
    if n == 0:
        return
    union = {key: nested.cat([part[key] for part in parts]) for key in parts[0]}
    # union: the kept memory rows (in chosen order), then the chunk rows (in chunk order)
    kept = int(mem_slots.numel())
    positions = torch.arange(n)
    where = torch.empty(n, dtype=torch.int64)
    where[positions[from_memory]] = torch.arange(kept)
    where[positions[~from_memory][order]] = kept + torch.arange(n - kept)
    memory.replace({key: nested.index(value, where.to(memory.device)) for key, value in union.items()})


# ------------------------------------------------------------------------------------ policies
class UpdateEndPolicy(SlotPolicy):
    """Base of the update-end policies: nothing is kept online; :meth:`choose` picks at update end.

    Subclasses implement ``choose(ctx) -> (chosen union rows, memory rows)`` and may declare state
    with :meth:`state_dict` / :meth:`load_state_dict` (saved with the memory as ``policy_state``).
    """

    name = "update_end"
    #: online inserts keep nothing, so a distributed insert need not gather targets
    uses_targets = False

    def __init__(self, batch_size: int = 1024) -> None:
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        self.batch_size = batch_size

    #: set by :meth:`attach` once an updater promises to call :meth:`on_update_end`
    _attached = False

    def place(self, offer: Offer) -> tuple[Tensor, Tensor]:
        if not self._attached and offer.capacity > 0:
            raise RuntimeError(
                f"{type(self).__name__} chooses the memory at the end of an update, but nothing calls its "
                "on_update_end: the memory would stay empty. Use it through a ModelUpdater (memory_policy=...), "
                "or call policy.attach(model, capacity) where on_update_end(ctx) is called"
            )
        empty = torch.zeros(0, dtype=torch.int64)
        return empty, empty

    def attach(self, model: nn.Module, capacity: int) -> None:
        """Check ``model`` (:meth:`check`) and record that the caller runs the update-end hook."""
        self.check(capacity, model)
        self._attached = True

    def check(self, capacity: int, model: nn.Module | None = None) -> None:
        """Refuse a model this policy cannot read, before anything is trained."""

    #: the update whose selection is done (saved, so a rolled-back update selects again)
    selected_update = -1

    def state_dict(self) -> dict[str, Any]:
        return {"selected_update": torch.tensor(self.selected_update, dtype=torch.int64)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.selected_update = int(state.get("selected_update", torch.tensor(-1)))

    def choose(self, ctx: UpdateContext) -> tuple[Tensor, int]:
        raise NotImplementedError

    def on_update_end(self, ctx: UpdateContext) -> None:
        """Choose the samples to keep among the memory and the whole chunk, and rewrite the memory."""
        if ctx.memory.capacity == 0 or int(ctx.update) == self.selected_update:
            return  # a second call in the same update (two hooks) must not select twice
        self.check(ctx.memory.capacity, ctx.model)
        chosen, memory_rows = self.choose(ctx)
        rewrite_memory(ctx, chosen, memory_rows, self.batch_size)
        self.selected_update = int(ctx.update)
