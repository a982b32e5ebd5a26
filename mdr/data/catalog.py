"""Named datasets: turn ``synthetic-small`` or ``cloth`` into a prepared folder, on first use.

=====================  =========================================================
name                   what happens on first use
=====================  =========================================================
``synthetic-tiny``     generate the tiny shop (CI, seconds) and prepare it
``synthetic-small``    generate the small shop (the default of every table)
``synthetic-cloth``    generate the Cloth-sized shop (speed/memory benchmarks)
``photo-tiny``         generate the tiny photo shop (every item a real product
``photo-small``        photo, :mod:`mdr.data.shop.photos`) from the fashion corpus
                       (``$MDR_FASHION_DIR``, else
                       ``../shared/data/fashion-product-images-small``) and prepare
                       it as the synthetic shop of the same size
``cloth`` ``toys``     download the Amazon 2014 5-core category (reviews, meta,
``office``             images) and prepare it at 64x64 (the paper's datasets)
``magazine``           prepare the real Amazon 2018 Magazine_Subscriptions files
                       already on disk: ``$MDR_AMAZON2018_DIR``, else
                       ``../shared/data/amazon2018-small`` beside the current
                       folder or the checkout (reviews and metadata, no images)
a folder path          a prepared folder (holding ``dataset.json``) is used as is
=====================  =========================================================

Everything lands under the data root: ``$MDR_DATA`` or ``./data``
(``raw/<name>/`` and ``proc/<name>/``). The embedded shop is prepared at 32x32
(the documented CPU default: a conv VAE step is ~8x cheaper than at 64x64);
real data at 64x64, as in the paper.
"""

from __future__ import annotations

import os
from pathlib import Path

from mdr import io as mio
from mdr.config import PrepareConfig
from mdr.data.parse import CATEGORY_ALIASES, DataError

# the generated shops: name -> size; the photo shops are those of PHOTO
PHOTO = {"photo-tiny": "tiny", "photo-small": "small"}
SYNTHETIC = {
    "synthetic-tiny": "tiny",
    "synthetic-small": "small",
    "synthetic-cloth": "cloth",
    **PHOTO,
}
AMAZON = CATEGORY_ALIASES  # downloaded on first use
# real categories whose files are expected on disk (not downloaded): name -> (category, year)
LOCAL = {"magazine": ("Magazine_Subscriptions", 2018)}
ENV_AMAZON2018 = "MDR_AMAZON2018_DIR"
SHARED_AMAZON2018 = Path("..") / "shared" / "data" / "amazon2018-small"
SYNTHETIC_IMAGE_SIZE = 32
REAL_IMAGE_SIZE = 64
DEFAULT_DATASET = "synthetic-small"


def data_root() -> Path:
    return Path(os.environ.get("MDR_DATA", "data")).resolve()


def known_names() -> list[str]:
    return [*SYNTHETIC, *AMAZON, *LOCAL]


def real_prepare_config() -> PrepareConfig:
    """How real data is prepared: 64x64 images and ABAE's word2vec (dim 200, min_count 10)."""
    return PrepareConfig(image_size=REAL_IMAGE_SIZE, w2v_dim=200, w2v_min_count=10)


def dataset_name(spec: str | Path) -> str:
    """A short name for result folders: the catalog name, else the prepared dataset's name."""
    spec = str(spec)
    if spec in SYNTHETIC or spec in AMAZON or spec in LOCAL:
        return spec
    from mdr.data.dataset import ProcessedDataset

    return ProcessedDataset.open(spec).name


def resolve(
    spec: str | Path, root: Path | None = None, seed: int = 0, progress: bool = True
) -> Path:
    """Return the prepared folder for a dataset name or path, creating it on first use."""
    root = root or data_root()
    spec_s = str(spec)
    if spec_s in SYNTHETIC:
        return _ensure_synthetic(spec_s, root, seed, progress)
    if spec_s in AMAZON:
        return _ensure_amazon(spec_s, root, progress)
    if spec_s in LOCAL:
        return _ensure_local(spec_s, root, progress)
    path = Path(spec)
    if (path / "dataset.json").is_file():
        return path
    if path.exists():
        raise DataError(
            f"{path}: not a prepared dataset (no dataset.json); run `mdr data prepare` first"
        )
    raise DataError(f"unknown dataset {spec_s!r}: give a prepared folder or one of {known_names()}")


def _ensure_synthetic(name: str, root: Path, seed: int, progress: bool) -> Path:
    """Generate (drawn, or from the photo corpus for the names of :data:`PHOTO`) and
    prepare a shop; both kinds are prepared alike."""
    from mdr.data.preprocess import prepare
    from mdr.data.shop import generate

    proc = root / "proc" / name
    if (proc / "dataset.json").is_file():
        return proc
    raw = root / "raw" / name
    if not (raw / "factors.json").is_file():
        photos = None
        if name in PHOTO:
            from mdr.data.shop.photos import default_photos_dir

            photos = default_photos_dir()
        generate(SYNTHETIC[name], seed=seed, out=raw, progress=progress, photos=photos)
    # the tiny shop's users have only ~75 unseen items: 50 negatives per evaluation list
    n_neg = 50 if SYNTHETIC[name] == "tiny" else PrepareConfig().n_neg
    cfg = PrepareConfig(image_size=SYNTHETIC_IMAGE_SIZE, n_neg=n_neg)
    prepare(raw, proc, category="Synthetic", cfg=cfg, progress=progress)
    return proc


def _ensure_amazon(name: str, root: Path, progress: bool) -> Path:
    from mdr.data.download import download
    from mdr.data.preprocess import prepare

    category = AMAZON[name]
    proc = root / "proc" / name
    if (proc / "dataset.json").is_file():
        return proc
    raw = root / "raw" / name
    download(category, raw, year=2014, progress=progress)
    prepare(raw, proc, category=category, year=2014, cfg=real_prepare_config(), progress=progress)
    return proc


def _ensure_local(name: str, root: Path, progress: bool) -> Path:
    from mdr.data.preprocess import prepare

    category, year = LOCAL[name]
    proc = root / "proc" / name
    if (proc / "dataset.json").is_file():
        return proc
    raw = mio.shared_folder(SHARED_AMAZON2018, ENV_AMAZON2018)
    if not raw.is_dir():
        raise DataError(
            f"{name}: the Amazon 2018 files are not at {raw}; set "
            f"{ENV_AMAZON2018} to the folder holding {category}_5.json.gz"
        )
    prepare(
        raw,
        proc,
        category=category,
        year=year,
        cfg=real_prepare_config(),
        name=name,
        progress=progress,
    )
    return proc
