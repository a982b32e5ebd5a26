"""Why one item was recommended to one user: ``mdr explain RUN --user U --item I``.

Everything is read off the model exactly as evaluation scores it
(:mod:`mdr.training.evaluate`): item representations r from ``model.encode_items``
(posterior means, :func:`mdr.training.evaluate.item_representations`), the user's
history of the TEST split (training items plus the validation item, the most
recent ``train.max_hist`` of them, right-aligned, :func:`mdr.data.batches.eval_samples`),
and the DIN head through ``model.score``. An :class:`Explanation` holds

- the score: the DIN logit (Eq. 20) and its probability sigmoid(logit);
- the rank of the item in the user's stored test list (column 0 the held-out
  positive, then the sampled negatives); an item outside the list gets the rank
  it would have if it were added;
- one :class:`SlotContribution` per named part of r (``model.r_parts()``: the slots,
  ``blackbox`` and an appended id embedding): the drop in the logit when its columns are
  replaced by their mean over ALL items, for the candidate AND every history
  item (``drop``), and for the candidate only (``drop_candidate``). Sorted by
  ``drop``, largest first. ``all_means_logit`` is the logit with every column
  replaced (the average item after an average history), the common reference;
  the slot drops need not add up to ``logit - all_means_logit`` (the head is
  non-linear);
- the history items the DIN attention weighed most (Eq. 18, read from
  ``model.attention_weights``): the raw weights wh_k (DIN uses NO softmax, so they
  neither sum to one nor need be positive; ``u = sum_k wh_k h_k``, Eq. 19) and
  each item's share ``|wh_k| / sum_k |wh_k|`` of the total weight on the real
  history, which sums to one; the ``top_history`` items of largest ``|wh_k|``
  are listed (a negative weight pulls the interest vector u away from that item);
- words: the item facts behind each slot. On the synthetic shop the
  ground-truth factor values (``factors.npz``, value names in ``dataset.json``);
  on real data the weak labels' class names where an item is labelled (and its
  leaf category), else its id and title. A slot is matched to the fact of the
  same name, else to the fact named by its weak label, and counted among the
  ``top_history`` most recent history items ("like 3 of your last 5 items").

What a run must offer (:mod:`mdr.models.capabilities`): DIN attention over the history
(:class:`~mdr.models.capabilities.HistoryAttention`), i.e. MDR, its ablations and the
representation baselines. Models on item-id embeddings only (``din``) have no named
parts of r: they are explained by the attention alone, and :attr:`Explanation.notes`
says so. ``mdr explain`` (:mod:`mdr.cli`) turns the command line's users and items
into the indices :func:`explain` takes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import torch
from torch import Tensor

from mdr.data.batches import Split, eval_samples
from mdr.data.dataset import ProcessedDataset
from mdr.models.capabilities import HistoryAttention
from mdr.training.evaluate import item_representations
from mdr.training.runs import LoadedRun, RunError

SPLIT: Split = "test"
NUISANCE = "nuisance"
# what explain needs of a run's model, and the reason a run without it is refused
NEEDS = "attention"
PURPOSE = (
    "explain needs a representation model under the DIN head (mdr, its ablations, "
    "beta_vae, abae, din_pp, din)"
)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class SlotContribution:
    """What one slot of r adds to the score (logit units)."""

    slot: str
    n_columns: int
    drop: float  # logit - logit with the slot's columns at their mean (candidate + history)
    drop_candidate: float  # the same with only the candidate's columns replaced
    fact: str | None = None  # the factor / weak label the slot is read as
    value: str | None = None  # the candidate's value of that fact (None when unknown)
    matches: int | None = None  # how many of the `recent` latest history items share it
    recent: int = 0


@dataclass(frozen=True)
class HistoryWeight:
    """One history item and the weight DIN's attention gave it for the candidate (Eq. 18)."""

    item: int
    item_id: str
    title: str | None
    position: int  # 1 = the most recent item of the history
    weight: float  # wh_k (no softmax)
    share: float  # |wh_k| / sum |wh| over the real history
    facts: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Explanation:
    """Why ``item`` was scored as it was for ``user`` (see the module docstring)."""

    run: str
    dataset: str
    model: str
    split: str
    user: int
    user_id: str
    item: int
    item_id: str
    item_title: str | None
    logit: float
    probability: float
    rank: int  # 1-based in the user's evaluation list (ties rank above the item)
    list_size: int  # the list's length (plus one when the item is not in it)
    in_list: bool
    held_out: bool  # the item is the user's held-out test positive
    history_length: int
    all_means_logit: float
    contributions: tuple[SlotContribution, ...]
    attention: tuple[HistoryWeight, ...]  # the top_history items by |weight|, largest first
    item_facts: dict[str, str]
    facts_source: str  # "factors" (synthetic ground truth), "labels" (weak labels) or "none"
    recent_facts: tuple[dict[str, str], ...]  # facts of the latest history items, newest first
    notes: tuple[str, ...] = ()

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (tuples become lists); :meth:`from_dict` reads it back."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Explanation:
        """The inverse of :meth:`to_dict` (also after a JSON round trip)."""
        d = dict(d)
        d["contributions"] = tuple(SlotContribution(**c) for c in d["contributions"])
        d["attention"] = tuple(HistoryWeight(**h) for h in d["attention"])
        d["recent_facts"] = tuple(dict(f) for f in d["recent_facts"])
        d["notes"] = tuple(d.get("notes", ()))
        return cls(**d)

    # ------------------------------------------------------------------ words
    def summary(self) -> str:
        """One sentence: the slots that raise the score most, with the candidate's values,
        e.g. "Recommended mostly for colour: blue, like 3 of your last 5 items"."""
        named = [c for c in self.contributions if c.slot != "blackbox" and c.drop > 0]
        if not self.contributions:
            return self._attention_sentence(
                "No named slots to explain by; the attention weighed most"
            )
        if not named:
            return (
                "No named slot raises the score (every slot's drop is <= 0); "
                + self._attention_sentence("the attention looked most at").lstrip()
            )
        parts = [_slot_phrase(c) for c in named[:2]]
        text = "Recommended mostly for " + parts[0]
        if len(parts) > 1:
            text += "; then for " + parts[1]
        return text + "."

    def _attention_sentence(self, lead: str) -> str:
        names = [_item_name(h.item_id, h.title) for h in self.attention[:2]]
        if not names:
            return f"{lead} nothing: the user has no history."
        return f"{lead} {' and '.join(names)} in the user's history."

    def to_text(self) -> str:
        """A few lines for people."""
        lines = [
            f"Why {_item_name(self.item_id, self.item_title)} (item {self.item}) for user "
            f"{self.user_id} (user {self.user})",
            f"  run {self.run} (model {self.model}), dataset {self.dataset}, "
            f"{self.split} history of {self.history_length} items",
            f"Score: logit {self.logit:+.3f}, probability {self.probability:.3f}; "
            f"{self._rank_phrase()}",
            self.summary(),
        ]
        if self.item_facts:
            lines.append(f"The item: {_facts_phrase(self.item_facts)}")
        lines += [f"Note: {n}" for n in self.notes]
        if self.contributions:
            lines.append(
                "Slot contributions (logit drop when the slot's columns of r are "
                "replaced by their mean over all items;"
            )
            lines.append(
                f"  for the candidate and the history / the candidate only; every "
                f"slot at its mean gives logit {self.all_means_logit:+.3f}):"
            )
            width = max(len(c.slot) for c in self.contributions)
            for c in self.contributions:
                extra = f"   {c.fact}: {c.value}" if c.value is not None else ""
                if c.matches is not None:
                    extra += f" ({c.matches} of the last {c.recent})"
                lines.append(f"  {c.slot:<{width}}  {c.drop:+.3f}  {c.drop_candidate:+.3f}{extra}")
        if self.attention:
            lines.append(
                "History items the attention weighed most (DIN weight wh_k of Eq. 18, "
                "no softmax; share of sum |wh|), largest |wh| first:"
            )
            for h in self.attention:
                when = "the latest item" if h.position == 1 else f"{h.position} items ago"
                facts = ""
                if self.item_facts:
                    shared = {k: v for k, v in h.facts.items() if self.item_facts.get(k) == v}
                    facts = (
                        f", shares {_facts_phrase(shared)} with the item"
                        if shared
                        else ", shares no fact with the item"
                    )
                lines.append(
                    f"  {_item_name(h.item_id, h.title)} ({when}) weight "
                    f"{h.weight:+.3f} ({100 * h.share:.0f}%){facts}"
                )
        return "\n".join(lines)

    def _rank_phrase(self) -> str:
        where = "in" if self.in_list else "if added to"
        tag = " (the held-out positive)" if self.held_out else ""
        return f"rank {self.rank} of {self.list_size} {where} the user's {self.split} list{tag}."


def _item_name(item_id: str, title: str | None) -> str:
    return f'{item_id} "{title}"' if title else item_id


def _facts_phrase(facts: dict[str, str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in facts.items())


def _slot_phrase(c: SlotContribution) -> str:
    """ "colour: blue, like 3 of your last 5 items" (or the bare slot name when unknown)."""
    if c.value is None:
        return f"its {c.slot} (slot {c.slot}, logit drop {c.drop:+.2f})"
    text = f"{c.fact}: {c.value}"
    if c.matches is not None and c.recent:
        text += (
            f", like {c.matches} of your last {c.recent} items"
            if c.matches
            else f", new among your last {c.recent} items"
        )
    return text


# --------------------------------------------------------------------------- item facts


@dataclass(frozen=True)
class ItemFacts:
    """Human-readable facts of every item: ``values[name][i]`` (None when unknown)."""

    source: str  # "factors", "labels" or "none"
    values: dict[str, list[str | None]]

    def of(self, item: int) -> dict[str, str]:
        return {k: v[item] for k, v in self.values.items() if v[item] is not None}


def item_facts(ds: ProcessedDataset) -> ItemFacts:
    """Ground-truth factor values (synthetic, nuisance factors left out), else the weak
    labels' class names (-1 = unknown) and the leaf category, else nothing."""
    info = ds.manifest.get("factors") or {}
    if ds.factors and info:
        values = {}
        for name, codes in ds.factors.items():
            meta = info.get(name, {})
            if meta.get("kind") == NUISANCE or "values" not in meta:
                continue
            names = list(meta["values"])
            values[name] = [names[int(c)] if 0 <= int(c) < len(names) else None for c in codes]
        return ItemFacts("factors", values)
    values: dict[str, list[str | None]] = {}
    for name, codes in ds.labels.items():
        names = ds.label_names.get(name)
        if names:
            values[name] = [names[int(c)] if 0 <= int(c) < len(names) else None for c in codes]
    if ds.n_categories > 1:
        cats = ds.category_names
        values["category"] = [cats[int(c)] for c in ds.item_category]
    return ItemFacts("labels" if values else "none", values)


def _slot_fact(slot: str, label: str | None, facts: ItemFacts) -> str | None:
    """The fact a slot is read as: the one of its own name, else its weak label's."""
    for key in (slot, label):
        if key is not None and key in facts.values:
            return key
    return None


# --------------------------------------------------------------------------- scoring


def _score(
    model: torch.nn.Module,
    reps: Tensor,
    hist: Tensor,
    mask: Tensor,
    cands: Tensor,
    user: int | None = None,
) -> Tensor:
    """``model.score`` of one user: ``hist``/``mask`` (H,), ``cands`` (C,) -> logits (C,);
    ``user`` for models that read the user id."""
    users = None if user is None else torch.tensor([user], device=reps.device)
    with torch.no_grad():
        return model.score(reps, hist[None], mask[None], cands[None], users)[0].float()


def _at_mean(reps: Tensor, cols: list[int], mean: Tensor) -> Tensor:
    """A copy of ``reps`` (I, D) with columns ``cols`` of every item set to ``mean`` (D,)."""
    out = reps.clone()
    out[:, cols] = mean[cols]
    return out


def slot_drops(
    model: torch.nn.Module,
    reps: Tensor,
    hist: Tensor,
    mask: Tensor,
    item: int,
    cols: list[int],
    user: int | None = None,
) -> tuple[float, float]:
    """(drop, drop_candidate): the logit minus the logit with ``cols`` of r at their mean
    over all items, for the candidate and the history / for the candidate only."""
    mean = reps.mean(dim=0)  # (D,)
    cand = torch.tensor([item], device=reps.device)
    base = _score(model, reps, hist, mask, cand, user)[0]
    both = _score(model, _at_mean(reps, cols, mean), hist, mask, cand, user)[0]
    # candidate only: an extra row I holds the candidate with the slot at its mean
    row = reps[item].clone()
    row[cols] = mean[cols]
    ext = torch.cat([reps, row[None]])  # (I + 1, D)
    only = _score(model, ext, hist, mask, torch.tensor([reps.shape[0]], device=reps.device), user)[
        0
    ]
    return float(base - both), float(base - only)


def part_columns(model: HistoryAttention) -> dict[str, list[int]]:
    """Named parts of r (``model.r_parts()``): slots, ``blackbox`` and, for a content model
    with an id embedding appended, ``id_embedding``. Empty for ``din``."""
    return model.r_parts()


def attention_weights(
    model: HistoryAttention, reps: Tensor, hist: Tensor, mask: Tensor, item: int
) -> Tensor:
    """wh_k of Eq. 18 from ``model.attention_weights``: (H,), zero on padded positions."""
    with torch.no_grad():
        h_hist = reps[hist][None]  # (1, H, D)
        h_cand = reps[[item]][None]  # (1, 1, D)
        return model.attention_weights(h_hist, mask[None], h_cand)[0, 0].float()  # (H,)


def list_rank(scores: Tensor, cands: Tensor, item: int, logit: float) -> tuple[int, int, bool]:
    """(rank, list size, in list): 1-based rank of ``logit`` among the list's OTHER
    scores, ties ranked above the item (as :func:`mdr.metrics.full_ranks` does)."""
    others = scores[cands != item]
    in_list = bool((cands == item).any())
    rank = 1 + int((others >= logit).sum())
    return rank, int(others.numel()) + 1, in_list


# --------------------------------------------------------------------------- explain


def _check_index(run: LoadedRun, user: int, item: int) -> None:
    ds = run.ds
    if not 0 <= user < ds.n_users:
        raise RunError(
            f"{run.folder.root}: unknown user {user} (dataset {ds.name} has users "
            f"0..{ds.n_users - 1})"
        )
    if not 0 <= item < ds.n_items:
        raise RunError(
            f"{run.folder.root}: unknown item {item} (dataset {ds.name} has items "
            f"0..{ds.n_items - 1})"
        )


def _contributions(
    run: LoadedRun,
    reps: Tensor,
    hist: Tensor,
    mask: Tensor,
    item: int,
    facts: ItemFacts,
    recent: list[int],
    user: int,
) -> list[SlotContribution]:
    labels = {s.name: s.label for s in run.cfg.model.slots}
    out = []
    for slot, cols in part_columns(cast(HistoryAttention, run.model)).items():
        drop, drop_cand = slot_drops(run.model, reps, hist, mask, item, cols, user)
        fact = _slot_fact(slot, labels.get(slot), facts)
        value = facts.values[fact][item] if fact else None
        matches = (
            sum(facts.values[fact][j] == value for j in recent)
            if fact and value is not None
            else None
        )
        out.append(
            SlotContribution(slot, len(cols), drop, drop_cand, fact, value, matches, len(recent))
        )
    return sorted(out, key=lambda c: -c.drop)


def _attention(
    run: LoadedRun, reps: Tensor, hist: Tensor, mask: Tensor, item: int, facts: ItemFacts, top: int
) -> list[HistoryWeight]:
    w = attention_weights(cast(HistoryAttention, run.model), reps, hist, mask, item)  # (H,)
    real = torch.nonzero(mask).squeeze(1)
    total = float(w[real].abs().sum())
    H = hist.shape[0]
    order = sorted(real.tolist(), key=lambda k: -abs(float(w[k])))[:top]  # by |wh_k|
    out = []
    for k in order:
        j = int(hist[k])
        meta = run.ds.items[j]
        share = abs(float(w[k])) / total if total > 0 else 1.0 / len(real)
        out.append(
            HistoryWeight(
                j,
                str(meta.get("asin", j)),
                meta.get("title"),
                H - k,
                float(w[k]),
                share,
                facts.of(j),
            )
        )
    return out


def explain(run: LoadedRun, user: int, item: int, top_history: int = 5) -> Explanation:
    """Explain the score of ``item`` for ``user`` (0-based indices of the prepared dataset)
    under the test-split history, as evaluation scores it (see the module docstring). A run
    whose model has no DIN attention is a :class:`RunError`."""
    run.require(NEEDS, purpose=PURPOSE)
    _check_index(run, user, item)
    if top_history < 1:
        raise ValueError(f"top_history must be >= 1, got {top_history}")
    ds, model, dev = run.ds, run.model, run.device
    samples = eval_samples(ds, SPLIT, run.cfg.train.max_hist)
    hist = torch.from_numpy(samples["hist"][user]).to(dev)  # (H,)
    mask = torch.from_numpy(samples["hist_mask"][user]).to(dev)  # (H,)
    cands = torch.from_numpy(samples["cands"][user]).to(dev)  # (C,)
    model.eval()
    reps = item_representations(model, ds.n_items, run.cfg.train.eval_batch_size, dev)  # (I, D)
    scores = _score(model, reps, hist, mask, torch.cat([cands, cands.new_tensor([item])]), user)
    logit = float(scores[-1])
    rank, size, in_list = list_rank(scores[:-1], cands, item, logit)
    everything = list(range(reps.shape[1]))
    all_means = float(
        _score(
            model,
            _at_mean(reps, everything, reps.mean(0)),
            hist,
            mask,
            cands.new_tensor([item]),
            user,
        )[0]
    )
    facts = item_facts(ds)
    real = hist[mask].tolist()  # oldest first
    recent = real[::-1][:top_history]  # newest first
    contributions = _contributions(run, reps, hist, mask, item, facts, recent, user)
    notes = []
    if not contributions:
        notes.append(
            f"model {run.cfg.model.name!r} represents items by id embeddings only: "
            "it has no named slots, so only the attention explains the score"
        )
    if facts.source == "none":
        notes.append(
            f"dataset {ds.name} has no factors or weak labels: items are named by id and title"
        )
    meta = ds.items[item]
    return Explanation(
        run=run.folder.root.name,
        dataset=ds.name,
        model=run.cfg.model.name,
        split=SPLIT,
        user=user,
        user_id=ds.user_ids[user],
        item=item,
        item_id=str(meta.get("asin", item)),
        item_title=meta.get("title"),
        logit=logit,
        probability=_sigmoid(logit),
        rank=rank,
        list_size=size,
        in_list=in_list,
        held_out=item == int(cands[0]),
        history_length=len(real),
        all_means_logit=all_means,
        contributions=tuple(contributions),
        attention=tuple(_attention(run, reps, hist, mask, item, facts, top_history)),
        item_facts=facts.of(item),
        facts_source=facts.source,
        recent_facts=tuple(facts.of(j) for j in recent),
        notes=tuple(notes),
    )


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


__all__ = [
    "NEEDS",
    "PURPOSE",
    "Explanation",
    "HistoryWeight",
    "ItemFacts",
    "SlotContribution",
    "attention_weights",
    "explain",
    "item_facts",
    "list_rank",
    "part_columns",
    "slot_drops",
]
