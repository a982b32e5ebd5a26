"""What the one trainer trains on: a task opens the prepared data, gives each epoch's
training rows, and validates and tests a model on it.

=========================  =================================================================
task                       what it is
=========================  =================================================================
``recommendation``         a prepared Amazon-format dataset (:class:`~mdr.data.dataset.
(:class:`RecommendationTask`)  ProcessedDataset`). Rows: DIN's samples of the epoch
                           (:func:`mdr.data.batches.training_samples`: every prefix's next
                           item plus ``train.n_train_neg`` negatives drawn from
                           ``rng(seed, "train-neg", epoch)``). Validation: GAUC, AUC, NDCG@10,
                           HR@10 on the stored validation lists; selection on GAUC (higher is
                           better). Test: the stored test lists and full ranking.
``images``                 an image corpus without users (:class:`~mdr.data.fashion.
(:class:`ImageTask`)       FashionImages`), or the images of a prepared dataset. A seeded
                           ``train.valid_fraction`` of the items with an image
                           (``rng(seed, "image-split")``) is held out. Rows: the training
                           items. Validation: each loss term on the held-out items (posterior
                           means) and, per labelled slot, the accuracy of its Eq. 12
                           classifier against the held-out items' GROUND TRUTH (when the data
                           has it) beside the majority class; selection on the held-out loss
                           (lower is better; the ground truth never selects). Test: the same
                           on the held-out items for the selected weights (there is no
                           third split).
=========================  =================================================================

Every task names its data by a fingerprint (:func:`data_fingerprint`): a hash of the
prepared folder's ``dataset.json`` without the paths and timings that differ between
two preparations of the same inputs; a run records it and is refused other data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from mdr.config import ConfigError, RunConfig, config_hash
from mdr.data.batches import training_samples
from mdr.data.dataset import ProcessedDataset
from mdr.data.parse import DataError
from mdr.models.base import ItemFeatures
from mdr.seeding import rng
from mdr.training.evaluate import eval_mode, evaluate_model, evaluate_split
from mdr.training.registry import task_of


def data_fingerprint(manifest: dict[str, Any]) -> str:
    """A short hash of a prepared folder's manifest: its inputs' checksums, config, counts,
    labels and skips, without the provenance block and the absolute paths (the same inputs
    prepared in another folder or on another day have the same fingerprint)."""
    source = {
        k: v for k, v in (manifest.get("source") or {}).items() if k not in ("raw", "images", "dir")
    }
    return config_hash(
        {**{k: v for k, v in manifest.items() if k != "provenance"}, "source": source}, length=16
    )


class Task(Protocol):
    """What the trainer needs of its data (see the module docstring)."""

    kind: str
    root: Path
    monitor: str  # the validation metric that selects the best epoch
    maximize: bool
    required: tuple[str, ...]  # the model methods the task calls

    @property
    def name(self) -> str: ...

    @property
    def fingerprint(self) -> str: ...

    def features(self) -> ItemFeatures: ...

    def epoch_rows(self, epoch: int) -> dict[str, np.ndarray]:
        """The epoch's training rows in a fixed order (the trainer shuffles and batches)."""
        ...

    def validate(
        self, model: nn.Module, device: torch.device, amp: bool, progress: bool
    ) -> dict[str, float]: ...

    def test(
        self, model: nn.Module, device: torch.device, amp: bool, progress: bool
    ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The test metrics and, per test unit (user), the values they average."""
        ...

    @property
    def has_test(self) -> bool:
        """False on validation-only data (tuning): the task has no test to score."""
        ...


# --------------------------------------------------------------------------- recommendation


def item_features(ds: ProcessedDataset) -> ItemFeatures:
    """Everything a content model may use about the items, as CPU tensors (built once)."""
    text = ds.text
    labels = {k: torch.from_numpy(v.astype(np.int64)) for k, v in ds.labels.items()}
    classes = {name: len(names) for name, names in ds.label_names.items()}
    for name, y in labels.items():  # labels without class names in the manifest
        classes.setdefault(name, int(y.max()) + 1 if y.numel() else 0)
    return ItemFeatures(
        n_items=ds.n_items,
        n_users=ds.n_users,
        images=torch.from_numpy(np.array(ds.images)),  # uint8 (I, S, S, 3), copied from the mmap
        image_mask=torch.from_numpy(ds.image_mask.astype(bool)),
        tokens=torch.from_numpy(text["tokens"].astype(np.int64)),  # (I, L)
        lengths=torch.from_numpy(text["lengths"].astype(np.int64)),
        word_vectors=torch.from_numpy(ds.word_vectors.astype(np.float32)),  # (V, d)
        labels=labels,
        label_classes=classes,
        category=torch.from_numpy(ds.item_category.astype(np.int64)),
        n_categories=ds.n_categories,
    )


@dataclass
class RecommendationTask:
    """A prepared Amazon-format dataset under the protocol of docs/design.md."""

    ds: ProcessedDataset
    cfg: RunConfig
    kind: str = "recommendation"
    monitor: str = "gauc"
    maximize: bool = True
    required: tuple[str, ...] = ("calculate_loss", "predict", "encode_items", "score")

    @property
    def root(self) -> Path:
        return self.ds.root

    @property
    def data(self) -> ProcessedDataset:
        return self.ds

    @property
    def name(self) -> str:
        return self.ds.name

    @property
    def fingerprint(self) -> str:
        return data_fingerprint(self.ds.manifest)

    def features(self) -> ItemFeatures:
        return item_features(self.ds)

    def epoch_rows(self, epoch: int) -> dict[str, np.ndarray]:
        t = self.cfg.train
        return training_samples(self.ds, epoch, self.cfg.seed, t.n_train_neg, t.max_hist)

    def validate(
        self, model: nn.Module, device: torch.device, amp: bool, progress: bool
    ) -> dict[str, float]:
        t = self.cfg.train
        return evaluate_model(
            model,
            self.ds,
            "valid",
            t.max_hist,
            t.eval_batch_size,
            device,
            amp=amp,
            progress=progress,
        )

    @property
    def has_test(self) -> bool:
        return self.ds.has_test

    def test(
        self, model: nn.Module, device: torch.device, amp: bool, progress: bool
    ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        t = self.cfg.train
        ev = evaluate_split(
            model,
            self.ds,
            "test",
            t.max_hist,
            t.eval_batch_size,
            device,
            full_ranking=t.full_ranking,
            amp=amp,
            progress=progress,
            full_rank_users=t.full_rank_users,
        )
        per_user = {"user": ev.users, **ev.per_user}
        if len(ev.full_users):
            per_user |= {"full_user": ev.full_users, "full_rank": ev.full_ranks}
        return {"n_users": self.ds.n_users, **ev.metrics}, per_user


# --------------------------------------------------------------------------- images


def _open_images(root: Path) -> Any:
    """An image corpus (``kind: images-only``) or a prepared recommendation dataset."""
    from mdr.data.dataset import read_manifest
    from mdr.data.fashion import KIND, FashionImages

    if (root / "dataset.json").is_file() and read_manifest(root).get("kind") == KIND:
        return FashionImages.open(root)
    return ProcessedDataset.open(root)


@dataclass
class ImageTask:
    """The image side trained alone on the photos of a prepared folder."""

    data: Any  # FashionImages or ProcessedDataset: images, labels, label_names, factors
    cfg: RunConfig
    kind: str = "images"
    monitor: str = "loss"
    maximize: bool = False
    required: tuple[str, ...] = (
        "calculate_loss",
        "loss_terms",
        "combine",
        "encode_items",
        "decode_images",
        "predict_labels",
    )
    train_items: np.ndarray = field(init=False)
    valid_items: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.train_items, self.valid_items = split_items(
            self._with_image(), self.cfg.train.valid_fraction, self.cfg.seed
        )

    @property
    def root(self) -> Path:
        return self.data.root

    @property
    def name(self) -> str:
        return self.data.name

    @property
    def fingerprint(self) -> str:
        return data_fingerprint(self.data.manifest)

    def _mask(self) -> np.ndarray:
        mask = getattr(self.data, "image_mask", None)
        return np.ones(self.data.n_items, bool) if mask is None else np.asarray(mask, bool)

    def _with_image(self) -> np.ndarray:
        return np.flatnonzero(self._mask())

    def features(self) -> ItemFeatures:
        labels = {
            k: torch.from_numpy(np.asarray(v).astype(np.int64)) for k, v in self.data.labels.items()
        }
        return ItemFeatures(
            n_items=self.data.n_items,
            n_users=0,
            images=torch.from_numpy(np.array(self.data.images)),  # uint8 (I, S, S, 3)
            image_mask=torch.from_numpy(self._mask()),
            labels=labels,
            label_classes={k: len(v) for k, v in self.data.label_names.items()},
        )

    def epoch_rows(self, epoch: int) -> dict[str, np.ndarray]:
        del epoch  # the same items every epoch; the trainer shuffles them per epoch
        return {"item": self.train_items.astype(np.int64)}

    def validate(
        self, model: nn.Module, device: torch.device, amp: bool, progress: bool
    ) -> dict[str, float]:
        del amp, progress
        return self._held_out(model, device)

    @property
    def has_test(self) -> bool:
        return True

    def test(
        self, model: nn.Module, device: torch.device, amp: bool, progress: bool
    ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        del amp, progress
        return {
            "n_items": self.data.n_items,
            "n_train": len(self.train_items),
            "n_valid": len(self.valid_items),
            **self._held_out(model, device),
        }, {}

    @torch.no_grad()
    def _held_out(self, model: Any, device: torch.device) -> dict[str, float]:
        """Loss terms (posterior means) on the held-out items and each labelled slot's
        accuracy against the ground truth, beside the majority class of the training
        items' weak labels."""
        items = self.valid_items
        batch = self.cfg.train.eval_batch_size
        sums: dict[str, float] = {}
        codes = []
        with eval_mode(model):
            for lo in range(0, len(items), batch):
                idx = torch.from_numpy(items[lo : lo + batch]).to(device)
                terms = model.loss_terms(idx, sample=False)
                for k, v in terms.items():
                    sums[k] = sums.get(k, 0.0) + float(v) * len(idx)
                codes.append(model.encode_items(idx))
            out = {k: v / len(items) for k, v in sums.items()}
            out["loss"] = float(model.combine({k: torch.tensor(v) for k, v in out.items()}))
            predicted = model.predict_labels(torch.cat(codes))
        factors = self.data.factors
        for slot, label in getattr(model, "slot_labels", {}).items():
            if label not in predicted or label not in factors:
                continue
            truth = torch.from_numpy(np.asarray(factors[label])[items].astype(np.int64))
            out[f"acc_{slot}"] = float((predicted[label].cpu() == truth).float().mean())
            weak = np.asarray(self.data.labels[label])[self.train_items]
            weak = weak[weak >= 0]
            majority = int(np.bincount(weak).argmax()) if len(weak) else 0
            out[f"chance_{slot}"] = float((truth == majority).float().mean())
        return out


def split_items(items: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train, held-out) subsets of ``items``, each sorted."""
    n_valid = max(1, round(fraction * len(items)))
    if len(items) - n_valid < 1:
        raise DataError(f"{len(items)} items with an image are too few to hold out {n_valid}")
    perm = rng(seed, "image-split").permutation(np.asarray(items))
    return np.sort(perm[n_valid:]), np.sort(perm[:n_valid])


# --------------------------------------------------------------------------- opening


def open_task(
    cfg: RunConfig, data: str | Path, validation_only: bool = False
) -> RecommendationTask | ImageTask:
    """The task that ``cfg.model.name`` trains on, over the prepared folder ``data``; with
    ``validation_only`` (tuning) over its validation-only view
    (:meth:`~mdr.data.dataset.ProcessedDataset.validation_only`): no test to score."""
    root = Path(data)
    kind = task_of(cfg.model.name)
    if kind == "images":
        if validation_only:
            raise ConfigError(
                f"model {cfg.model.name!r}: the image side alone has no "
                "validation-only view to tune on"
            )
        return ImageTask(_open_images(root), cfg)
    try:
        ds = ProcessedDataset.open(root)
        return RecommendationTask(ds.validation_only() if validation_only else ds, cfg)
    except DataError:
        from mdr.data.dataset import read_manifest
        from mdr.data.fashion import KIND

        if (root / "dataset.json").is_file() and read_manifest(root).get("kind") == KIND:
            raise ConfigError(
                f"{root}: an image corpus without users; model "
                f"{cfg.model.name!r} needs recommendation data (the image side "
                "alone is model.name: image_factors)"
            ) from None
        raise


__all__ = [
    "ImageTask",
    "RecommendationTask",
    "Task",
    "data_fingerprint",
    "item_features",
    "open_task",
    "split_items",
]
