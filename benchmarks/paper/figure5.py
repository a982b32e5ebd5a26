"""Figure 5: each text aspect's 10 nearest words, and the slot it is fused into.

    python -m benchmarks.figure5 [--dataset NAME] [--run DIR] [--data PROC] [-k 10]
                                 [--results DIR]

Reads a finished MDR run (default: the seed-0 ``mdr`` run listed in
``results/<dataset>/table2.manifest.json``; ``--run`` for any run with a text
side), never trains. For every row d_j of the aspect matrix D (Eq. 14) it lists
the k words whose word2vec vectors are closest in cosine, and the slot whose
columns of r move that aspect's weight p_j the most across the items (the
definition is in :mod:`mdr.explain.aspects`; the share of every slot is in the CSV).

On the synthetic shop each word's ground-truth factor is knowable from the
generator's word lists (:func:`synthetic_word_factors`), so every aspect also
gets a measured factor and purity: the fraction of its k words that belong to
that factor.

Output: ``results/<dataset>/figure5.csv``, ``figure5.md``, ``figure5.manifest.json``
and ``results/<dataset>/figures/figure5.png`` (the table drawn by matplotlib).
"""

from __future__ import annotations

import argparse
import re
import string
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from benchmarks.aggregate import default_run
from benchmarks.common import (
    RESULTS,
    run_script,
    to_csv,
    to_markdown,
    write_result,
)
from benchmarks.plotting import new_figure, save_figure, style
from mdr.argtypes import Parser
from mdr.explain.aspects import aspect_words, group_purity, model_aspect_slots
from mdr.models.capabilities import TextAspects
from mdr.training.runs import LoadedRun, load_run

_TOKEN = re.compile(r"[a-z]+")  # the shop's tokens (mdr.data.shop: lower-case [a-z]+)
QUALITY = "quality"  # the shop's quality factor shows in text only through sentiment
_SENTIMENT_BANKS = ("pos", "neg", "neu", "feeling", "bad_feeling")
_PEOPLE_FIELDS = ("who", "she", "her")


@dataclass(frozen=True)
class WordFactor:
    """The ground-truth factor a word of the synthetic shop speaks about."""

    factor: str
    value: str | None  # the factor value, when the word names exactly one
    how: str  # "value" (a value's own word), "topic" (only in that factor's sentences),
    # "sentiment" (a polarity word: quality -> rating -> polarity)


# --------------------------------------------------------------------------- ground truth


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def _template_words(templates: dict[str, tuple[str, ...]], factors: set[str]) -> set[str]:
    """Every token a topic's templates can produce, except the factor values they insert."""
    from mdr.data import shop as syn

    words: set[str] = set()
    for ts in templates.values():
        for t in ts:
            for literal, field, _, _ in string.Formatter().parse(t):
                words.update(_tokens(literal))
                if field is None or field in factors:
                    continue
                if field in _PEOPLE_FIELDS:
                    words.update(w for person in syn.PEOPLE for p in person for w in _tokens(p))
                else:
                    words.update(w for phrase in syn.BANKS[field] for w in _tokens(phrase))
    return words


def synthetic_word_factors() -> dict[str, WordFactor]:
    """Word -> the one ground-truth factor it belongs to, from the generator's word lists.

    A word belongs to factor f when (in this order of precedence):

    1. ``value``: it occurs in the synonyms of f's values (``VALUE_WORDS[f]``) and in no
       other factor's synonyms nor in any filler sentence or bank;
    2. ``topic``: it can only be produced by the sentences about f (the templates of topic
       f and the banks they use, e.g. colour adjectives) and names no other factor's value;
    3. ``sentiment`` (f = quality): it comes from the polarity banks (positive, negative,
       neutral words, feelings) and from no other bank, person, factor synonym or the
       literal text of a sentence of any polarity ("any" templates): quality shifts the
       rating, which sets the polarity of the review's sentences.

    Any other word (fillers, words shared between topics) belongs to no factor.
    """
    from mdr.data import shop as syn

    factors = set(syn.VALUE_WORDS)
    value_of: dict[str, set[tuple[str, str]]] = {}
    for f, values in syn.VALUE_WORDS.items():
        names = syn.FACTOR_BY_NAME[f].values
        for name, phrases in zip(names, values):
            for w in (w for phrase in phrases for w in _tokens(phrase)):
                value_of.setdefault(w, set()).add((f, name))
    filler = syn.filler_vocabulary()
    topic_words = {t: _template_words(d, factors) for t, d in syn.TEMPLATES.items()}
    out: dict[str, WordFactor] = {}
    for w, pairs in value_of.items():  # 1. value words
        fs = {f for f, _ in pairs}
        if len(fs) == 1 and w not in filler:
            vals = {v for _, v in pairs}
            out[w] = WordFactor(fs.pop(), vals.pop() if len(vals) == 1 else None, "value")
    for w in set().union(*topic_words.values()):  # 2. topic words
        topics = {t for t, ws in topic_words.items() if w in ws}
        if w in out or len(topics) != 1:
            continue
        (topic,) = topics
        if topic in factors and {f for f, _ in value_of.get(w, set())} <= {topic}:
            out[w] = WordFactor(topic, None, "topic")
    other_banks = {
        w
        for name, bank in syn.BANKS.items()
        if name not in _SENTIMENT_BANKS
        for phrase in bank
        for w in _tokens(phrase)
    }
    people = {w for person in syn.PEOPLE for p in person for w in _tokens(p)}
    unpolar = {
        w
        for d in syn.TEMPLATES.values()
        for t in d.get("any", ())
        for literal, _, _, _ in string.Formatter().parse(t)
        for w in _tokens(literal)
    }
    not_sentiment = other_banks | people | unpolar
    for name in _SENTIMENT_BANKS:  # 3. sentiment words
        for w in (w for phrase in syn.BANKS[name] for w in _tokens(phrase)):
            if w not in out and w not in not_sentiment and w not in value_of:
                out[w] = WordFactor(QUALITY, None, "sentiment")
    return out


def factor_columns(
    words: list[str], table: dict[str, WordFactor], order: list[str], k: int
) -> dict[str, Any]:
    """Factor, purity (all ways of belonging), value-word purity and the values named."""
    group = {w: t.factor for w, t in table.items()}
    factor, purity, counts = group_purity(words, group, order)
    if factor is None:
        return {
            "factor": "-",
            "purity": 0.0,
            "value_purity": 0.0,
            "values": "",
            "factor_counts": "",
        }
    strict = sum(
        1 for w in words if w in table and table[w].factor == factor and table[w].how == "value"
    )
    values = Counter(
        table[w].value for w in words if w in table and table[w].factor == factor and table[w].value
    )
    return {
        "factor": factor,
        "purity": purity,
        "value_purity": strict / k,
        "values": " ".join(f"{v}:{n}" for v, n in values.most_common()),
        "factor_counts": " ".join(f"{f}:{n}" for f, n in counts.items()),
    }


# --------------------------------------------------------------------------- the run


def open_run(run_dir: Path, data: Path | None) -> LoadedRun:
    """Reopen a run at its best epoch; a clear error for runs without text aspects."""
    return load_run(run_dir, data).require(
        "text_aspects",
        purpose="Figure 5 reads the aspects of a text side (a CTR baseline, "
        "DIN, or model.use_text: false has none)",
    )


@torch.no_grad()
def aspect_rows(lr: LoadedRun, k: int = 10) -> tuple[list[dict[str, Any]], list[str]]:
    """One row per aspect: its k nearest words, its slot and every slot's share; plus the
    factor and purity on the synthetic shop. Returns the rows and the slot names."""
    model = cast(TextAspects, lr.model)  # what open_run checked
    words = aspect_words(model.aspect_matrix, model.word_vectors, lr.ds.vocab, k)
    slots, shares = model_aspect_slots(model)  # (K, S)
    table = synthetic_word_factors() if lr.ds.is_synthetic else None
    order = [s.name for s in lr.cfg.model.slots]
    rows = []
    for j, top in enumerate(words):
        best = int(np.argmax(shares[j]))
        row: dict[str, Any] = {
            "aspect": j,
            "slot": slots[best],
            "slot_share": float(shares[j, best]),
            "words": " ".join(w for w, _ in top),
            "cosines": " ".join(f"{c:.3f}" for _, c in top),
            **{f"share_{s}": float(shares[j, i]) for i, s in enumerate(slots)},
        }
        if table is not None:
            row.update(factor_columns([w for w, _ in top], table, order, k))
        rows.append(row)
    return rows, slots


# --------------------------------------------------------------------------- outputs


def summary_lines(rows: list[dict[str, Any]], slots: list[str]) -> list[str]:
    """Measured one-liners under the table (synthetic shop only)."""
    if "factor" not in rows[0]:
        return []
    pure = [r for r in rows if r["purity"] >= 0.5]
    named = [r for r in pure if r["factor"] in slots]
    matched = [r for r in named if r["slot"] == r["factor"]]
    mean = float(np.mean([r["purity"] for r in rows]))
    covered = sorted({r["factor"] for r in pure})
    return [
        f"- Mean purity over the {len(rows)} aspects: {mean:.2f}; {len(pure)} aspect(s) have "
        f"purity >= 0.5, covering the factor(s) {', '.join(covered) or 'none'}.",
        f"- Of those, {len(named)} have a factor with a slot of the same name, and "
        f"{len(matched)} of them are fused mostly into that slot (chance: 1 in "
        f"{len(slots)} text-related slots).",
    ]


def markdown(
    rows: list[dict[str, Any]],
    slots: list[str],
    run_dir: Path,
    dataset: str,
    synthetic: bool,
    k: int,
) -> str:
    cols = ["aspect", "slot", "slot_share", "words"]
    heads = ["aspect", "slot", "share", f"{k} nearest words"]
    if synthetic:
        cols += ["factor", "purity", "value_purity"]
        heads += ["factor", "purity", "value-word purity"]
    md = [
        f"# Figure 5: text aspects and their slots ({dataset})",
        "",
        f"Run: `{run_dir.name}`. Words: the {k} nearest to each row of D by cosine "
        "(Eq. 14). Slot: the slot whose columns of r move the aspect's centred logit "
        "p_j the most across the items (share = its fraction of that variance; "
        "see mdr/explain/aspects.py).",
        "",
    ]
    if synthetic:
        md += [
            "Synthetic shop: factor = the ground-truth factor most of the words belong to "
            "(benchmarks/paper/figure5.py, `synthetic_word_factors`); purity = the fraction of "
            f"the {k} words that belong to it (value words, words only used in that "
            "factor's sentences, or sentiment words for quality); value-word purity counts "
            "only the factor values' own words.",
            "",
        ]
    md.append(to_markdown(rows, cols, heads))
    md += summary_lines(rows, slots)
    return "\n".join(md) + "\n"


def draw(
    rows: list[dict[str, Any]], dataset: str, run_name: str, path: Path, synthetic: bool
) -> Path:
    """The table as a PNG, in the paper's layout (aspect, related words) plus the slot."""
    heads = ["Aspect", "Slot (share)", "Related words"] + (["Factor (purity)"] if synthetic else [])
    cells = []
    for r in rows:
        line = [str(r["aspect"]), f"{r['slot']} ({r['slot_share']:.2f})", r["words"]]
        if synthetic:
            line.append(f"{r['factor']} ({r['purity']:.1f})" if r["factor"] != "-" else "-")
        cells.append(line)
    widths = [0.06, 0.13, 0.64, 0.17] if synthetic else [0.07, 0.15, 0.78]
    with style():
        fig, ax = new_figure(1, 1, size=(11.0, 0.6 + 0.24 * (len(rows) + 1)))
        ax.axis("off")
        table = ax.table(
            cellText=cells,
            colLabels=heads,
            colWidths=widths,
            loc="center",
            cellLoc="left",
            colLoc="left",
        )
        table.auto_set_font_size(False)
        table.set_fontsize(8)
        table.scale(1.0, 1.25)
        for (row, col), cell in table.get_celld().items():
            cell.set_linewidth(0.3)
            cell.PAD = 0.012 / widths[col]  # the same small left margin in every column
            if row == 0:
                cell.set_text_props(weight="bold")
                cell.set_facecolor("#eeeeee")
        ax.set_title(f"Figure 5: text aspects of {run_name} ({dataset})", fontsize=10)
        return save_figure(fig, path)


def figure5(run_dir: Path, results: Path, data: Path | None = None, k: int = 10) -> Path:
    """Write ``figure5.{csv,md,manifest.json}`` and ``figures/figure5.png`` for a run; returns
    the dataset's result folder."""
    lr = open_run(run_dir, data)
    rows, slots = aspect_rows(lr, k)
    dataset, synthetic = lr.ds.name, lr.ds.is_synthetic
    cols = ["aspect", "slot", "slot_share", *[f"share_{s}" for s in slots], "words", "cosines"]
    if synthetic:
        cols += ["factor", "purity", "value_purity", "values", "factor_counts"]
    folder = write_result(
        dataset,
        "figure5",
        to_csv(rows, cols),
        markdown(rows, slots, run_dir, dataset, synthetic, k),
        results_dir=results,
        run=str(run_dir),
        k=k,
        best_epoch=lr.best.get("epoch"),
        model=lr.cfg.model.name,
    )
    draw(rows, dataset, run_dir.name, folder / "figures" / "figure5.png", synthetic)
    return folder


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = Parser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--dataset",
        default="synthetic-small",
        help="find the seed-0 MDR run in <results>/<dataset>/table2.manifest.json",
    )
    p.add_argument("--run", type=Path, default=None, help="any finished run folder with text")
    p.add_argument(
        "--data",
        type=Path,
        default=None,
        help="prepared data folder (default: the one the run recorded)",
    )
    p.add_argument("-k", type=int, default=10, help="words per aspect (default 10)")
    p.add_argument("--results", type=Path, default=RESULTS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    run_dir = args.run or default_run(args.results, args.dataset)
    folder = figure5(run_dir, args.results, args.data, args.k)
    print((folder / "figure5.md").read_text(encoding="utf-8"))
    print(f"wrote {folder / 'figure5.csv'}, .md and {folder / 'figures' / 'figure5.png'}")
    return 0


if __name__ == "__main__":
    run_script("figure5", main)
