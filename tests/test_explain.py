"""Explaining one recommendation (mdr.explain.attribution, ``mdr explain``) on the tiny shop:
known answers recomputed independently of the module, text, JSON, CLI and errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from mdr.cli import resolve_item, resolve_user
from mdr.data.batches import eval_samples
from mdr.explain.attribution import (
    NEEDS,
    PURPOSE,
    Explanation,
    attention_weights,
    explain,
    slot_drops,
)
from mdr.training.evaluate import sampled_scores
from mdr.training.runs import LoadedRun, RunError, load_run
from tests.helpers import train_tiny

USER = 3


@pytest.fixture(scope="module")
def run(tiny_mdr_run: Path) -> LoadedRun:
    torch.set_num_threads(1)
    return load_run(tiny_mdr_run)


def _user_row(run: LoadedRun, user: int) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    s = eval_samples(run.ds, "test", run.cfg.train.max_hist)
    return (
        torch.from_numpy(s["hist"][user]),
        torch.from_numpy(s["hist_mask"][user]),
        s["cands"][user],
    )


def _reps(run: LoadedRun) -> torch.Tensor:
    with torch.no_grad():
        return run.model.encode_items(torch.arange(run.ds.n_items))  # (I, D)


def _list_scores(run: LoadedRun, user: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Evaluation's own scores of ``user``'s stored test list (C,), and the list's row."""
    samples = eval_samples(run.ds, "test", run.cfg.train.max_hist)
    row = {k: v[user : user + 1] for k, v in samples.items()}
    return sampled_scores(run.model, _reps(run), row, 8, torch.device("cpu"))[0], row


def _din_logit(
    run: LoadedRun, h_hist: torch.Tensor, mask: torch.Tensor, h_cand: torch.Tensor
) -> float:
    """The DIN head on explicit representations: (H, D), (H,), (D,) -> logit."""
    with torch.no_grad():
        return float(run.model.din(h_hist[None], mask[None], h_cand[None, None])[0, 0])


def test_score_and_rank_match_evaluation(run: LoadedRun) -> None:
    scores, row = _list_scores(run, USER)  # (C,)
    pos = int(row["cands"][0, 0])
    e = explain(run, USER, pos)
    assert e.logit == pytest.approx(scores[0], abs=1e-5)
    assert e.probability == pytest.approx(1 / (1 + np.exp(-scores[0])), abs=1e-6)
    assert e.held_out and e.in_list and e.list_size == scores.size
    assert e.rank == 1 + int((scores[1:] >= scores[0] - 1e-6).sum())
    neg = int(row["cands"][0, 1])  # a sampled negative: same list, its own rank
    e_neg = explain(run, USER, neg)
    assert not e_neg.held_out
    assert e_neg.rank == 1 + int((np.delete(scores, 1) >= scores[1] - 1e-6).sum())


def test_item_outside_the_list_gets_its_rank_if_added(run: LoadedRun) -> None:
    _, _, cands = _user_row(run, USER)
    outside = next(i for i in range(run.ds.n_items) if i not in set(cands.tolist()))
    e = explain(run, USER, outside)
    assert not e.in_list and e.list_size == cands.size + 1
    scores, _ = _list_scores(run, USER)  # (C,)
    assert e.rank == 1 + int((scores >= e.logit - 1e-6).sum())  # its place if added


def test_slot_drop_is_the_recomputed_score_difference(run: LoadedRun) -> None:
    hist, mask, cands = _user_row(run, USER)
    item = int(cands[0])
    reps = _reps(run)
    cols = run.model.fusion.r_columns()["colour"]
    at_mean = reps.clone()
    at_mean[:, cols] = reps[:, cols].mean(dim=0)
    base = _din_logit(run, reps[hist], mask, reps[item])
    both = _din_logit(run, at_mean[hist], mask, at_mean[item])
    only = _din_logit(run, reps[hist], mask, at_mean[item])
    e = explain(run, USER, item)
    by_slot = {c.slot: c for c in e.contributions}
    assert by_slot["colour"].drop == pytest.approx(base - both, abs=1e-5)
    assert by_slot["colour"].drop_candidate == pytest.approx(base - only, abs=1e-5)
    assert by_slot["colour"].n_columns == len(cols)
    assert set(by_slot) == set(run.model.fusion.r_columns())
    drops = [c.drop for c in e.contributions]
    assert drops == sorted(drops, reverse=True)
    assert not np.isclose(base, both)  # the slot matters at all: the check can fail


def test_all_slots_at_their_means_give_the_all_means_score(run: LoadedRun) -> None:
    hist, mask, cands = _user_row(run, USER)
    item = int(cands[0])
    reps = _reps(run)
    mean = reps.mean(dim=0)  # (D,): every item becomes the average item
    expected = _din_logit(run, mean.expand(hist.shape[0], -1), mask, mean)
    e = explain(run, USER, item)
    assert e.all_means_logit == pytest.approx(expected, abs=1e-5)
    every = sorted(c for cols in run.model.fusion.r_columns().values() for c in cols)
    assert every == list(range(reps.shape[1]))  # the slots and blackbox tile r
    drop, _ = slot_drops(run.model, reps, hist, mask, item, every)
    assert drop == pytest.approx(e.logit - expected, abs=1e-5)


def test_attention_weights_are_the_din_weights(run: LoadedRun) -> None:
    hist, mask, cands = _user_row(run, USER)
    item = int(cands[0])
    reps = _reps(run)
    w = attention_weights(run.model, reps, hist, mask, item)  # (H,)
    assert torch.all(w[~mask] == 0)
    with torch.no_grad():  # Eq. 19: u = sum_k wh_k h_k
        u = run.model.din.interest(reps[hist][None], mask[None], reps[[item]][None])[0, 0]
    assert torch.allclose(w @ reps[hist], u, atol=1e-5)
    e = explain(run, USER, item, top_history=hist.shape[0])
    assert sorted(h.item for h in e.attention) == sorted(hist[mask].tolist())
    assert sum(h.share for h in e.attention) == pytest.approx(1.0, abs=1e-6)
    size = [abs(h.weight) for h in e.attention]
    assert size == sorted(size, reverse=True)
    by_pos = {h.position: h.weight for h in e.attention}  # position 1 = the latest item
    H = hist.shape[0]
    for k in torch.nonzero(mask).squeeze(1).tolist():
        assert by_pos[H - k] == pytest.approx(float(w[k]), abs=1e-6)
    assert len(explain(run, USER, item, top_history=2).attention) == 2


def test_text_names_the_ground_truth_factor_values(run: LoadedRun) -> None:
    ds = run.ds
    seq = ds.user_sequences[USER]  # train, valid, test in time order
    item = int(seq[-1])  # the held-out test item
    e = explain(run, USER, item)
    info = ds.manifest["factors"]
    value = {f: info[f]["values"][int(ds.factors[f][item])] for f in ("colour", "shape", "brand")}
    assert e.facts_source == "factors"
    assert {k: e.item_facts[k] for k in value} == value
    assert "background" not in e.item_facts  # nuisance factors are not reasons
    recent = seq[:-1][::-1][:5]  # the test history, newest first
    colour = next(c for c in e.contributions if c.slot == "colour")
    assert colour.value == value["colour"] and colour.recent == len(recent)
    assert colour.matches == sum(
        int(ds.factors["colour"][j]) == int(ds.factors["colour"][item]) for j in recent
    )
    for h in e.attention:
        assert h.facts["colour"] == info["colour"]["values"][int(ds.factors["colour"][h.item])]
        assert h.item_id == ds.items[h.item]["asin"]
    text = e.to_text()
    assert ds.items[item]["asin"] in text and ds.user_ids[USER] in text
    top = next((c for c in e.contributions if c.slot != "blackbox" and c.drop > 0), None)
    if top is not None:
        assert e.summary().startswith(f"Recommended mostly for {top.fact}: {top.value}")
        assert f"{top.fact}: {top.value}" in text


def test_json_round_trip(run: LoadedRun) -> None:
    _, _, cands = _user_row(run, USER)
    e = explain(run, USER, int(cands[2]))
    back = Explanation.from_dict(json.loads(json.dumps(e.to_dict())))
    assert back == e
    assert back.to_text() == e.to_text()


def test_cli_accepts_raw_ids_and_indices(
    run: LoadedRun, tiny_mdr_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, _, cands = _user_row(run, USER)
    item = int(cands[0])
    asin, uid = run.ds.items[item]["asin"], run.ds.user_ids[USER]
    assert resolve_user(uid, run.ds) == USER and resolve_user(f"#{USER}", run.ds) == USER
    assert resolve_item(asin, run.ds) == item and resolve_item(str(item), run.ds) == item
    from mdr.cli import main

    assert (
        main(
            [
                "explain",
                str(tiny_mdr_run),
                "--user",
                uid,
                "--item",
                f"#{item}",
                "--json",
                "--top",
                "3",
            ]
        )
        == 0
    )
    got = Explanation.from_dict(json.loads(capsys.readouterr().out))
    assert got == explain(run, USER, item, top_history=3)
    assert main(["explain", str(tiny_mdr_run), "--user", str(USER), "--item", asin]) == 0
    assert "Score: logit" in capsys.readouterr().out


def test_unknown_user_or_item_is_a_clear_error(run: LoadedRun, tiny_mdr_run: Path) -> None:
    with pytest.raises(RunError, match=rf"{tiny_mdr_run.name}.*unknown user {run.ds.n_users}"):
        explain(run, run.ds.n_users, 0)
    with pytest.raises(RunError, match="unknown item -1"):
        explain(run, 0, -1)
    with pytest.raises(RunError, match=r"unknown user 'nobody'"):
        resolve_user("nobody", run.ds, tiny_mdr_run)
    with pytest.raises(RunError, match=r"unknown item '#100000'"):
        resolve_item("#100000", run.ds, tiny_mdr_run)
    with pytest.raises(RunError, match=rf"{tiny_mdr_run.name}.*B-NOT-AN-ASIN"):
        resolve_item("B-NOT-AN-ASIN", run.ds, tiny_mdr_run)


def test_mdr_explain_command(tiny_mdr_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Through the `mdr` parser: JSON out; a bad user is one line on stderr and status 2."""
    from mdr.cli import main

    assert main(["explain", str(tiny_mdr_run), "--user", "#0", "--item", "#1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["user"] == 0
    assert main(["explain", str(tiny_mdr_run), "--user", "nobody", "--item", "#1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mdr: error:") and "unknown user 'nobody'" in err


def test_runs_that_cannot_be_explained(
    tiny_mdr_run: Path, tiny_proc: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mdr.cli import main

    def one_line(run: Path, *extra: str) -> str:
        """What `mdr explain RUN` prints: one line on stderr, exit status 2."""
        capsys.readouterr()
        assert main(["explain", str(run), "--user", "#0", "--item", "#1", *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("mdr: error: ") and err.count("\n") == 1, err
        return err

    no_best = tmp_path / "no-best"
    no_best.mkdir()
    shutil.copy(tiny_mdr_run / "config.yaml", no_best / "config.yaml")
    err = one_line(no_best)
    assert "no-best: an unfinished run" in err and "--allow-unfinished" in err
    assert "no-best/best.pt: file not found" in one_line(no_best, "--allow-unfinished")
    deepfm = train_tiny(tiny_proc, tmp_path / "deepfm-s0", "deepfm", epochs=1, steps=2)
    lr = load_run(deepfm)
    assert not lr.capabilities.attention  # read once, when the run is opened
    want = (
        r"deepfm-s0: model 'deepfm' has no DIN attention over the history; explain needs "
        r"a representation model under the DIN head"
    )
    with pytest.raises(RunError, match=want):
        lr.require(NEEDS, purpose=PURPOSE)
    with pytest.raises(RunError, match=want):
        explain(lr, 0, 1)
    assert "deepfm-s0: model 'deepfm' has no DIN attention" in one_line(deepfm)
    assert "run folder not found" in one_line(tmp_path / "missing")
    mdr_run = load_run(tiny_mdr_run)
    assert mdr_run.require(NEEDS, purpose=PURPOSE) is mdr_run


def test_id_embedding_model_is_explained_by_attention_only(tiny_proc: Path, tmp_path: Path) -> None:
    folder = train_tiny(tiny_proc, tmp_path / "din-s0", "din", epochs=1, steps=2)
    din = load_run(folder)
    _, mask, cands = _user_row(din, USER)
    e = explain(din, USER, int(cands[0]))
    assert e.contributions == ()
    assert any("id embeddings only" in n for n in e.notes)
    assert len(e.attention) == min(5, int(mask.sum()))
    assert e.summary().startswith("No named slots to explain by; the attention weighed most")
    assert e.attention[0].item_id in e.summary()
    assert "only the attention explains" in e.to_text()


def test_real_data_falls_back_to_weak_label_names(
    tiny_mdr_run: Path, tiny_proc: Path, tmp_path: Path
) -> None:
    """Without ground-truth factors (real data), facts are the weak labels' class names
    where an item is labelled, plus its leaf category."""
    real = tmp_path / "proc"
    shutil.copytree(tiny_proc, real)
    (real / "factors.npz").unlink()
    manifest = json.loads((real / "dataset.json").read_text())
    manifest.pop("factors")
    manifest["synthetic"] = False
    (real / "dataset.json").write_text(json.dumps(manifest))
    from mdr.explain.attribution import item_facts

    lr = load_run(tiny_mdr_run, data=real, allow_other_data=True)  # the same run, "real" data
    facts = item_facts(lr.ds)
    assert facts.source == "labels"
    colour = lr.ds.labels["colour"]
    labelled = int(np.flatnonzero(colour >= 0)[0])
    unlabelled = int(np.flatnonzero(colour < 0)[0])
    names = lr.ds.label_names["colour"]
    assert facts.of(labelled)["colour"] == names[colour[labelled]]
    assert "colour" not in facts.of(unlabelled)
    assert facts.of(unlabelled)["category"] == lr.ds.items[unlabelled]["category"]
    e = explain(lr, USER, unlabelled)
    c = next(c for c in e.contributions if c.slot == "colour")
    assert c.fact == "colour" and c.value is None and c.matches is None  # unknown: no claim
    e = explain(lr, USER, labelled)
    c = next(c for c in e.contributions if c.slot == "colour")
    assert c.value == names[colour[labelled]]
    assert e.facts_source == "labels" and e.to_text()
