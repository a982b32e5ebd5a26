"""The ``mdr`` command.

::

    mdr data synth    --size {tiny,small,cloth} --seed N --out DIR [--overwrite] [--photos [DIR]]
    mdr data download --category CAT --out DIR [--year 2014|2018] [--base-url URL] [--no-images]
    mdr data prepare  --raw DIR --out PROC [--category CAT] [--year 2014|2018]
                      [--allow-missing-meta] [--lenient | --strict] [--overwrite]
                      [--image-size 64] [--n-neg 100] [--seed 0]
    mdr data stats    PROC [--json]
    mdr data fashion-images [--dir DIR] --out PROC [--image-size 64] [--limit N] [--overwrite]
    mdr train         --config CFG --data PROC --out RUN [--model M] [--seed S] [--epochs N]
                      [--device D] [--set KEY=VALUE] [--resume] [--overwrite]
    mdr tune          --config CFG --data PROC --model M --storage FILE|URL [--trials N]
    mdr evaluate      RUN [--split valid|test] [--full-ranking] [--json]
    mdr explain       RUN --user U --item I [--top K] [--json]

Every subcommand exits with status 2 and one clear line on bad input (a
missing file, a malformed config, an unknown dataset) instead of a traceback:

- arguments are checked where they are parsed (types and ranges, e.g.
  ``--n-neg`` >= 1, ``--image-size`` 4..512); a bad one is one line
  ``mdr <command>: error: argument ...`` (no usage dump), exit 2;
- :func:`main` turns the project's own error types (``ConfigError``,
  ``DataError`` and its ``DownloadError``, ``OutputError``, ``RunError``: each
  raised where bad input is recognised, naming the input) and operating-system
  errors about a path (``OSError`` carrying a file name: not found, permission
  denied, not a folder, disk full while writing a named file...) into
  ``mdr: error: ...``, exit 2;
- anything else (including a bare ``ValueError``/``TypeError``) is a bug and keeps
  its traceback, so that no bug is silently turned into a "user error".
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mdr.argtypes import Parser, float_range, int_range, safe_name


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, sort_keys=False, default=str))


def _print_result(result: dict[str, Any], as_json: bool) -> None:
    """A result dict as JSON, or as aligned ``key: value`` lines for people."""
    if as_json:
        _print_json(result)
        return
    width = max((len(k) for k in result), default=0)
    for k, v in result.items():
        print(f"{k:>{width}}: {v}")


# --------------------------------------------------------------------------- data


def _cmd_synth(a: argparse.Namespace) -> int:
    from mdr.data.shop import generate

    photos = a.photos
    if photos == "":  # --photos without a folder: the corpus's default place
        from mdr.data.shop.photos import default_photos_dir

        photos = default_photos_dir()
    summary = generate(
        a.size, seed=a.seed, out=a.out, progress=not a.quiet, overwrite=a.overwrite, photos=photos
    )
    _print_json(summary)
    return 0


def _cmd_download(a: argparse.Namespace) -> int:
    from mdr.data.download import download

    report = download(
        a.category,
        a.out,
        year=a.year,
        base_url=a.base_url,
        images=not a.no_images,
        workers=a.workers,
        progress=not a.quiet,
        mirror=a.mirror,
        reviews_url=a.reviews_url,
        meta_url=a.meta_url,
    )
    _print_json(report)
    return 0


def _cmd_prepare(a: argparse.Namespace) -> int:
    from mdr.config import PrepareConfig
    from mdr.data.preprocess import prepare

    cfg = PrepareConfig(
        image_size=a.image_size, n_neg=a.n_neg, seed=a.seed, label_fraction=a.label_fraction
    )
    manifest = prepare(
        a.raw,
        a.out,
        category=a.category,
        year=a.year,
        cfg=cfg,
        images_dir=a.images_dir,
        strict=a.strict,
        name=a.name,
        progress=not a.quiet,
        lenient=a.lenient,
        allow_missing_meta=a.allow_missing_meta,
        overwrite=a.overwrite,
    )
    counts, src = manifest["counts"], manifest["source"]
    skips = manifest.get("skips", {}).get("counts", {})
    print(
        f"prepared {manifest['name']} ({src['year']} release, {src['category']}) -> {a.out}: "
        f"{counts['users']} users, {counts['items']} items, {counts['behaviors']} behaviours "
        f"({counts['behaviors_distinct']} distinct)"
    )
    if skips:
        print("skipped: " + ", ".join(f"{k}: {v}" for k, v in skips.items()))
    return 0


def _cmd_fashion_images(a: argparse.Namespace) -> int:
    from mdr.data.fashion import default_fashion_dir, prepare_fashion

    m = prepare_fashion(
        a.dir or default_fashion_dir(),
        a.out,
        image_size=a.image_size,
        min_count=a.min_count,
        label_fraction=a.label_fraction,
        seed=a.seed,
        limit=a.limit,
        progress=not a.quiet,
        rare=a.rare,
        strict=a.strict,
        overwrite=a.overwrite,
    )
    c = m["counts"]
    print(
        f"{a.out}: {c['items']} photos, {len(m['labels']['colour'])} colours, "
        f"{len(m['labels']['article'])} articles, {c['skipped']} skips "
        f"{m['skips']['counts']}"
    )
    return 0


def _cmd_stats(a: argparse.Namespace) -> int:
    from mdr.data.dataset import ProcessedDataset

    _print_result(ProcessedDataset.open(a.proc).stats(), a.json)
    return 0


# --------------------------------------------------------------------------- train / evaluate


def _train_overrides(a: argparse.Namespace) -> dict[str, Any]:
    """Dotted config overrides from the command line (``--epochs`` -> ``train.epochs``...)."""
    from mdr.config import ConfigError, parse_value

    flags = {
        "train.epochs": a.epochs,
        "train.device": a.device,
        "seed": a.seed,
        "train.max_steps_per_epoch": a.max_steps,
        "train.num_threads": a.threads,
    }
    overrides = {k: v for k, v in flags.items() if v is not None}
    for item in a.set or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        overrides[key] = parse_value(value)
    return overrides


def _resolve_data(spec: str, quiet: bool) -> Path:
    """The prepared folder for ``--data``. Under torchrun, rank 0 alone creates a named
    dataset on first use; the other ranks wait for its ``dataset.json``."""
    from mdr.data.catalog import SYNTHETIC, data_root, resolve
    from mdr.training import distributed

    if distributed.is_main() or spec not in SYNTHETIC:  # real data: prepared beforehand
        return resolve(spec, progress=not quiet and distributed.is_main())
    import time

    ready = data_root() / "proc" / spec / "dataset.json"
    deadline = time.monotonic() + distributed.timeout().total_seconds()
    while not ready.is_file():
        if time.monotonic() > deadline:
            from mdr.data.parse import DataError

            raise DataError(
                f"rank {distributed.rank()}: gave up waiting for rank 0 to prepare "
                f"{spec!r} ({ready})"
            )
        time.sleep(2.0)
    return resolve(spec, progress=False)


def _cmd_train(a: argparse.Namespace) -> int:
    from mdr.config import load_run_config
    from mdr.training import distributed
    from mdr.training.train import train

    # the config (and every override) is checked before any data or folder is touched
    cfg = load_run_config(a.config, _train_overrides(a), model=a.model)
    data = _resolve_data(a.data, a.quiet)
    if a.flush_denormals:
        from mdr.seeding import flush_denormals

        flush_denormals()
    result = train(
        cfg,
        data,
        a.out,
        resume=a.resume,
        progress=not a.quiet,
        overwrite=a.overwrite,
        allow_other_data=a.allow_other_data,
    )
    if distributed.is_main():  # under torchrun: one result, not one per rank
        _print_json(result)
    return 0


def _run_data(spec: str | None, quiet: bool) -> Path | None:
    """``--data`` of evaluate/explain: a prepared folder or a dataset name (None: the run's)."""
    if spec is None:
        return None
    from mdr.data.catalog import resolve

    return resolve(spec, progress=not quiet)


def _cmd_tune(a: argparse.Namespace) -> int:
    import torch

    from mdr.config import load_tuning, parse_value, search_space
    from mdr.training.tuning import StudySpec, run_worker

    tuning = load_tuning(a.config)
    space = search_space(a.config, a.model)  # checked before any data or study is touched
    fixed = dict(tuning.fixed)
    for item in a.set or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            from mdr.config import ConfigError

            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        fixed[key] = parse_value(value)
    data = _resolve_data(a.data, a.quiet)
    from mdr.data.catalog import dataset_name

    storage = a.storage
    runs = a.runs or (Path(storage).parent / "runs" if "://" not in storage else None)
    if runs is None:
        from mdr.config import ConfigError

        raise ConfigError("--runs: needed with an RDB --storage (where the trials' run folders go)")
    spec = StudySpec(
        config=a.config,
        model=a.model,
        data=data,
        storage=storage,
        study=a.study or a.model,
        trials=a.trials or tuning.trials,
        seed=tuning.seed,
        runs=runs,
        dataset=dataset_name(a.data),
        overrides=fixed,
    )
    torch.set_num_threads(a.threads)

    def said(index: int, state: str) -> None:
        if not a.quiet:
            print(f"{spec.study}: trial {index + 1}/{spec.trials} {state}", flush=True)

    ran = run_worker(spec, space, progress=False, on_trial=said)
    _print_json({"study": spec.study, "storage": storage, "trials_run_here": ran})
    return 0


def _cmd_evaluate(a: argparse.Namespace) -> int:
    from mdr.training.runs import evaluate_run

    result = evaluate_run(
        a.run,
        data=_run_data(a.data, a.quiet),
        split=a.split,
        full_ranking=a.full_ranking,
        device=a.device,
        progress=not a.quiet,
        allow_other_data=a.allow_other_data,
        allow_unfinished=a.allow_unfinished,
    )
    if result.get("unfinished"):
        print(
            f"mdr: warning: {a.run} is an unfinished run; these are its best epoch so far",
            file=sys.stderr,
        )
    _print_result(result, a.json)
    return 0


def _resolve(spec: str | int, raw_ids: list[str], what: str, run: Path, ds: Any) -> int:
    """A raw id or an index -> the 0-based index: ``#12`` is always index 12; a plain
    ``12`` is the raw id ``"12"`` when the dataset has one (Amazon book asins are all
    digits), else index 12."""
    from mdr.training.runs import RunError

    s = str(spec).strip()
    if not s.startswith("#"):
        try:
            return raw_ids.index(s)
        except ValueError:
            pass
    digits = s[1:] if s.startswith("#") else s
    if digits.isdigit() and int(digits) < len(raw_ids):
        return int(digits)
    raise RunError(
        f"{run}: unknown {what} {s!r} in dataset {ds.name} ({ds.root}): give a raw "
        f"id or an index 0..{len(raw_ids) - 1} (#N is always an index)"
    )


def resolve_user(spec: str | int, ds: Any, run: Path = Path(".")) -> int:
    """``--user``: the index of a user given as a ``reviewerID`` (``users.txt``) or an index
    of the prepared dataset ``ds``."""
    return _resolve(spec, ds.user_ids, "user", run, ds)


def resolve_item(spec: str | int, ds: Any, run: Path = Path(".")) -> int:
    """``--item``: the index of an item given as an ``asin`` (``items.jsonl``) or an index."""
    asins = [str(m.get("asin", i)) for i, m in enumerate(ds.items)]
    return _resolve(spec, asins, "item", run, ds)


def _cmd_explain(a: argparse.Namespace) -> int:
    from mdr.explain.attribution import NEEDS, PURPOSE, explain
    from mdr.training.runs import load_run

    run = load_run(
        a.run,
        _run_data(a.data, a.quiet),
        a.device,
        allow_other_data=a.allow_other_data,
        allow_unfinished=a.allow_unfinished,
    ).require(NEEDS, purpose=PURPOSE)
    if not run.folder.is_finished():
        print(
            f"mdr: warning: {a.run} is an unfinished run; explaining its best epoch so far",
            file=sys.stderr,
        )
    user = resolve_user(a.user, run.ds, run.folder.root)
    item = resolve_item(a.item, run.ds, run.folder.root)
    e = explain(run, user, item, top_history=a.top)
    if a.json:
        _print_json(e.to_dict())
    else:
        print(e.to_text())
    return 0


# --------------------------------------------------------------------------- parser


_SEED = int_range(0, 2**31 - 1)  # numpy seed sequences and gensim need non-negative seeds


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="mdr",
        description="MDR companion: data, training and evaluation for "
        "Multimodal Disentangled Representation for Recommendation (ICME 2021)",
    )
    sub = p.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars")

    data = sub.add_parser("data", help="create, download, prepare and inspect datasets")
    dsub = data.add_subparsers(dest="data_command", required=True)

    s = dsub.add_parser(
        "synth", parents=[common], help="write the embedded synthetic shop (Amazon 2014 layout)"
    )
    s.add_argument("--size", choices=["tiny", "small", "cloth"], default="small")
    s.add_argument("--seed", type=_SEED, default=0)
    s.add_argument("--out", required=True, type=Path)
    s.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a shop that an earlier `mdr data synth` wrote at --out",
    )
    s.add_argument(
        "--photos",
        nargs="?",
        const="",
        default=None,
        metavar="DIR",
        help="the photo shop: every item a real product photo of the fashion "
        "corpus at DIR (without DIR: $MDR_FASHION_DIR, else "
        "../shared/data/fashion-product-images-small); sizes tiny, small",
    )
    s.set_defaults(func=_cmd_synth)

    d = dsub.add_parser(
        "download", parents=[common], help="download an Amazon 5-core category and its images"
    )
    d.add_argument(
        "--category",
        required=True,
        type=safe_name,
        help="e.g. Clothing_Shoes_and_Jewelry, or cloth/toys/office",
    )
    d.add_argument("--out", required=True, type=Path)
    d.add_argument("--year", type=int, choices=[2014, 2018], default=2014)
    # the names of mdr.data.download.MIRRORS, spelled out so --help needs no import
    d.add_argument(
        "--mirror",
        default=None,
        help="fetch from this built-in mirror only (2014: snap, mcauleylab; 2018: "
        "jmcauley, mcauleylab, datarepo); default: each in that order until "
        "one serves the file",
    )
    d.add_argument(
        "--reviews-url",
        default=None,
        help="where the reviews file is, instead of the mirrors: its folder, or "
        "its full URL (ending in .gz); saved under the release's file name",
    )
    d.add_argument(
        "--meta-url",
        default=None,
        help="where the metadata file is, instead of the mirrors (as --reviews-url)",
    )
    d.add_argument(
        "--base-url",
        default=None,
        help="one folder holding both files, e.g. a local mirror (the same as "
        "giving it to --reviews-url and --meta-url)",
    )
    d.add_argument("--no-images", action="store_true")
    d.add_argument("--workers", type=int_range(1, 64), default=8, help="parallel image downloads")
    d.set_defaults(func=_cmd_download)

    r = dsub.add_parser(
        "prepare", parents=[common], help="5-core, splits, evaluation lists, text, images, labels"
    )
    r.add_argument(
        "--raw",
        required=True,
        type=Path,
        help="a folder in the Amazon layout (2014 or 2018 release)",
    )
    r.add_argument("--out", required=True, type=Path)
    r.add_argument(
        "--category",
        default=None,
        type=safe_name,
        help="the category to prepare when --raw holds several (any name; "
        "cloth/toys/office for the paper's); default: the one present",
    )
    r.add_argument(
        "--year",
        type=int,
        choices=[2014, 2018],
        default=None,
        help="the release, when --raw holds both; default: found from the files",
    )
    r.add_argument(
        "--allow-missing-meta",
        action="store_true",
        help="prepare without a metadata file (items get no title, category <unknown>)",
    )
    r.add_argument(
        "--image-size",
        type=int_range(4, 512),
        default=64,
        help="pixels per side, 4..512 (default 64)",
    )
    r.add_argument(
        "--n-neg",
        type=int_range(1, 100_000),
        default=100,
        help="sampled negatives per evaluation list",
    )
    r.add_argument("--seed", type=_SEED, default=0)
    r.add_argument(
        "--label-fraction",
        type=float_range(0.0, 1.0),
        default=0.1,
        help="fraction of labelled items kept for weak supervision, 0..1",
    )
    r.add_argument("--images-dir", type=Path, default=None, help="images already on disk")
    r.add_argument("--name", default=None, type=safe_name, help="dataset name (default: derived)")
    damage = r.add_mutually_exclusive_group()
    damage.add_argument("--strict", action="store_true", help="fail on the first malformed line")
    damage.add_argument(
        "--lenient",
        action="store_true",
        help="a truncated file or one of mostly malformed lines is a counted skip, not an error",
    )
    r.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a dataset that an earlier `mdr data prepare` wrote at --out",
    )
    r.set_defaults(func=_cmd_prepare)

    fa = dsub.add_parser(
        "fashion-images",
        parents=[common],
        help="real product photos (Fashion Product Images, small) for the "
        "image side: images, weak colour/article labels, ground truth",
    )
    fa.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="the corpus folder (default: $MDR_FASHION_DIR, then "
        "../shared/data/fashion-product-images-small)",
    )
    fa.add_argument("--out", required=True, type=Path)
    fa.add_argument(
        "--image-size",
        type=int_range(8, 512),
        default=64,
        help="pixels per side, 8..512 (default 64)",
    )
    fa.add_argument(
        "--limit", type=int_range(1, 10**9), default=None, help="first N photographed rows only"
    )
    fa.add_argument(
        "--min-count",
        type=int_range(1, 10**9),
        default=50,
        help="classes rarer than this become 'other' (default 50)",
    )
    fa.add_argument(
        "--label-fraction",
        type=float_range(0.0, 1.0),
        default=0.1,
        help="fraction of items whose weak labels training may see (default 0.1)",
    )
    fa.add_argument("--seed", type=_SEED, default=0)
    fa.add_argument(
        "--rare",
        choices=["other", "drop"],
        default="other",
        help="classes rarer than --min-count: merged into 'other' or dropped",
    )
    fa.add_argument("--strict", action="store_true", help="fail on the first malformed row")
    fa.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier `mdr data fashion-images` output at --out",
    )
    fa.set_defaults(func=_cmd_fashion_images)

    st = dsub.add_parser("stats", parents=[common], help="Table 1 figures of a prepared dataset")
    st.add_argument("proc", type=Path)
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=_cmd_stats)

    t = sub.add_parser(
        "train",
        parents=[common],
        help="train any model (MDR, its baselines and ablations, the CTR "
        "baselines, the image side alone) with the one trainer",
    )
    t.add_argument("--config", type=Path, default=None, help="YAML run config")
    t.add_argument("--data", required=True, help="prepared folder or dataset name")
    t.add_argument("--out", required=True, type=Path, help="run folder")
    t.add_argument(
        "--model",
        default=None,
        help="a registered model (mdr, beta_vae, abae, din_pp, din, wide_deep, pnn, "
        "deepfm, image_factors) or a baseline/ablation named in the config; "
        "default: the config's model.name",
    )
    t.add_argument("--seed", type=_SEED, default=None)
    t.add_argument("--epochs", type=int_range(1, 100_000), default=None)
    t.add_argument("--device", default=None, help="cpu, cuda, cuda:N or auto")
    t.add_argument(
        "--max-steps", type=int_range(1, 10**9), default=None, help="cap steps per epoch (smoke)"
    )
    t.add_argument("--threads", type=int_range(1, 1024), default=None, help="torch CPU threads")
    t.add_argument(
        "--flush-denormals",
        action="store_true",
        help="flush subnormal floats to zero: several times faster on a CPU once weights "
        "decay towards zero; changes values below 1.2e-38 only, recorded in the run's "
        "provenance (a run resumes only in the mode it started with)",
    )
    t.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="dotted config override, e.g. loss.eta=0 (repeatable)",
    )
    t.add_argument("--resume", action="store_true", help="continue from RUN/checkpoint.pt")
    t.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run in RUN (only a run folder's own files are removed)",
    )
    t.add_argument(
        "--allow-other-data",
        action="store_true",
        help="resume on data other than the run's (its fingerprint differs)",
    )
    t.set_defaults(func=_cmd_train)

    tu = sub.add_parser(
        "tune",
        parents=[common],
        help="run trials of one model's tuning study (validation only); "
        "python -m benchmarks.tune drives every model",
    )
    tu.add_argument(
        "--config",
        type=Path,
        required=True,
        help="YAML config with the model, its search: space and tuning: section",
    )
    tu.add_argument("--data", required=True, help="prepared folder or dataset name")
    tu.add_argument("--model", required=True, help="a model name of the config")
    tu.add_argument(
        "--storage", required=True, help="an Optuna journal file (shared filesystem) or an RDB URL"
    )
    tu.add_argument("--study", default=None, help="the study's name (default: the model)")
    tu.add_argument(
        "--trials",
        type=int_range(1, 100_000),
        default=None,
        help="counted trials the study should hold (default: the config's tuning.trials)",
    )
    tu.add_argument(
        "--runs",
        type=Path,
        default=None,
        help="where the trials' run folders go (default: runs/ beside a journal)",
    )
    tu.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="a config override for every trial, after tuning.fixed (repeatable)",
    )
    tu.add_argument("--threads", type=int_range(1, 1024), default=1, help="torch CPU threads")
    tu.set_defaults(func=_cmd_tune)

    run_args = argparse.ArgumentParser(add_help=False)
    run_args.add_argument(
        "--data", default=None, help="prepared folder or dataset name (default: the run's)"
    )
    run_args.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    run_args.add_argument("--json", action="store_true")
    run_args.add_argument(
        "--allow-other-data",
        action="store_true",
        help="use data other than the run's (its fingerprint differs)",
    )
    run_args.add_argument(
        "--allow-unfinished", action="store_true", help="use an unfinished run's best epoch so far"
    )

    e = sub.add_parser("evaluate", parents=[common, run_args], help="re-score a finished run")
    e.add_argument("run", type=Path)
    e.add_argument("--split", choices=["valid", "test"], default="test")
    e.add_argument("--full-ranking", action="store_true")
    e.set_defaults(func=_cmd_evaluate)

    x = sub.add_parser(
        "explain",
        parents=[common, run_args],
        help="why a run recommends an item to a user: slots, attention, words",
    )
    x.add_argument("run", type=Path, help="run folder (with config.yaml and best.pt)")
    x.add_argument("--user", required=True, help="reviewerID, or an index (#N is always an index)")
    x.add_argument("--item", required=True, help="asin, or an index (#N is always an index)")
    x.add_argument(
        "--top", type=int_range(0, 1000), default=5, help="history items to show (default 5)"
    )
    x.set_defaults(func=_cmd_explain)
    return p


# The project's own error types, raised where bad input is recognised, naming it.
_USER_ERRORS = (
    ("mdr.config", "ConfigError"),
    ("mdr.data.parse", "DataError"),
    ("mdr.io", "OutputError"),
    ("mdr.training.errors", "RunError"),
)


def _user_errors() -> tuple[type[BaseException], ...]:
    """The project's error types among the modules already loaded: an exception of a type
    whose module was never imported cannot have been raised, so the handler imports
    nothing (no torch) while a command fails or is interrupted."""
    found = []
    for module, name in _USER_ERRORS:
        loaded = sys.modules.get(module)
        if loaded is not None:
            found.append(getattr(loaded, name))
    return tuple(found)


def _path_error(e: OSError) -> str | None:
    """One line for an OS error about a path the user gave (or a full disk), else None.

    An OSError without a file name (a socket, a pipe...) is not about the user's input
    and is left to show its traceback.
    """
    if e.filename is None:
        return None
    where = f"{e.filename}" + (f" -> {e.filename2}" if e.filename2 is not None else "")
    return f"{where}: {e.strerror or type(e).__name__}"


def _bounded(text: str, limit: int = 2000) -> str:
    """One line of bounded length: a message never floods the terminal."""
    text = " ".join(text.split())
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def guarded(
    prog: str,
    func: Callable[[], int],
    *,
    user_errors: tuple[type[BaseException], ...] = (),
    interrupted: str = "",
) -> int:
    """Run ``func`` under the rule of every command: the project's error types (and
    ``user_errors``) and OS errors about a path are one line ``<prog>: error: ...`` with exit
    status 2; anything else is a bug and keeps its traceback."""
    try:
        return func()
    except KeyboardInterrupt:  # first: its clause evaluates nothing, imports nothing
        import signal

        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C: no traceback
        print(f"{prog}: interrupted{interrupted}", file=sys.stderr)
        return 130
    except (*_user_errors(), *user_errors) as e:
        print(f"{prog}: error: {_bounded(str(e))}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `mdr data stats ... | head`: the reader left, nothing to say
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no flush error at exit
        return 0
    except OSError as e:
        line = _path_error(e)
        if line is None:
            raise
        print(f"{prog}: error: {line}", file=sys.stderr)
        return 2


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    hint = " (a run resumes with --resume)" if args.command == "train" else ""
    return guarded("mdr", lambda: func(args), interrupted=hint)


if __name__ == "__main__":
    sys.exit(main())
