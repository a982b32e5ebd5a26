"""Named datasets: turn ``synthetic-small`` or ``cloth`` into a prepared folder, on first use.

=====================  =========================================================
name                   what happens on first use
=====================  =========================================================
``synthetic-tiny``     generate the tiny shop (CI, seconds) and prepare it
``synthetic-small``    generate the small shop (the default of every table)
``synthetic-cloth``    generate the Cloth-sized shop (speed/memory benchmarks)
``cloth`` ``toys``     download the Amazon 2014 5-core category (reviews, meta,
``office``             images) and prepare it at 64x64 (the paper's datasets)
a folder path          a prepared folder (holding ``dataset.json``) is used as is
=====================  =========================================================

Everything lands under the data root: ``$MDR_DATA`` or ``./data``
(``raw/<name>/`` and ``proc/<name>/``). The embedded shop is prepared at 32x32
(the documented CPU default: a conv VAE step is ~8x cheaper than at 64x64);
real data at 64x64, as in the paper.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from mdr.data.parse import DataError

SYNTHETIC = {"synthetic-tiny": "tiny", "synthetic-small": "small", "synthetic-cloth": "cloth"}
AMAZON = {
    "cloth": "Clothing_Shoes_and_Jewelry",
    "toys": "Toys_and_Games",
    "office": "Office_Products",
}
SYNTHETIC_IMAGE_SIZE = 32
REAL_IMAGE_SIZE = 64
DEFAULT_DATASET = "synthetic-small"


def data_root() -> Path:
    return Path(os.environ.get("MDR_DATA", "data")).resolve()


def known_names() -> list[str]:
    return [*SYNTHETIC, *AMAZON]


def dataset_name(spec: str | Path) -> str:
    """A short name for result folders: the catalog name, else the prepared dataset's name."""
    spec = str(spec)
    if spec in SYNTHETIC or spec in AMAZON:
        return spec
    from mdr.data.dataset import ProcessedDataset

    return ProcessedDataset.open(spec).name


def resolve(spec: str | Path, root: Path | None = None, seed: int = 0,
            progress: bool = True) -> Path:
    """Return the prepared folder for a dataset name or path, creating it on first use."""
    root = root or data_root()
    spec_s = str(spec)
    if spec_s in SYNTHETIC:
        return _ensure_synthetic(spec_s, root, seed, progress)
    if spec_s in AMAZON:
        return _ensure_amazon(spec_s, root, progress)
    path = Path(spec)
    if (path / "dataset.json").is_file():
        return path
    if path.exists():
        raise DataError(f"{path}: not a prepared dataset (no dataset.json); "
                        "run `mdr data prepare` first")
    raise DataError(f"unknown dataset {spec_s!r}: give a prepared folder or one of {known_names()}")


def _ensure_synthetic(name: str, root: Path, seed: int, progress: bool) -> Path:
    from mdr.data.preprocess import PrepareConfig, prepare
    from mdr.data.synthetic import generate

    proc = root / "proc" / name
    if (proc / "dataset.json").is_file():
        return proc
    raw = root / "raw" / name
    if not (raw / "factors.json").is_file():
        generate(SYNTHETIC[name], seed=seed, out=raw, progress=progress)
    # the tiny shop's users have only ~75 unseen items: 50 negatives per evaluation list
    n_neg = 50 if name == "synthetic-tiny" else PrepareConfig().n_neg
    cfg = replace(PrepareConfig(), image_size=SYNTHETIC_IMAGE_SIZE, n_neg=n_neg)
    prepare(raw, proc, category="Synthetic", cfg=cfg, progress=progress)
    return proc


def _ensure_amazon(name: str, root: Path, progress: bool) -> Path:
    from mdr.data.download import download
    from mdr.data.preprocess import PrepareConfig, prepare

    category = AMAZON[name]
    proc = root / "proc" / name
    if (proc / "dataset.json").is_file():
        return proc
    raw = root / "raw" / name
    download(category, raw, year=2014, progress=progress)
    # ABAE's word2vec settings (dim 200, min_count 10) on the real reviews
    cfg = replace(PrepareConfig(), image_size=REAL_IMAGE_SIZE, w2v_dim=200, w2v_min_count=10)
    prepare(raw, proc, category=category, year=2014, cfg=cfg, progress=progress)
    return proc
