"""Atomic writes leave either the complete file or nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mdr import io as mio
from mdr.seeding import rng


def test_atomic_path_keeps_old_file_when_writer_fails(tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    mio.write_json(target, {"a": 1})
    with pytest.raises(RuntimeError), mio.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text().strip() == '{\n  "a": 1\n}'
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_atomic_dir_is_all_or_nothing(tmp_path: Path) -> None:
    out = tmp_path / "proc"
    with pytest.raises(RuntimeError), mio.atomic_dir(out) as tmp:
        (tmp / "dataset.json").write_text("{}")
        raise RuntimeError("interrupted")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []
    with mio.atomic_dir(out) as tmp:
        (tmp / "x.txt").write_text("done")
    assert (out / "x.txt").read_text() == "done"


def test_npy_and_json_numpy_values(tmp_path: Path) -> None:
    mio.write_npy(tmp_path / "a.npy", np.arange(4, dtype=np.int32))
    assert np.load(tmp_path / "a.npy").tolist() == [0, 1, 2, 3]
    mio.write_json(tmp_path / "b.json", {"x": np.float32(0.5), "n": np.int64(3)})
    assert '"x": 0.5' in (tmp_path / "b.json").read_text()


def test_named_rng_streams_are_reproducible_and_independent() -> None:
    a = rng(0, "train-neg", 1).integers(0, 1000, 5)
    assert a.tolist() == rng(0, "train-neg", 1).integers(0, 1000, 5).tolist()
    assert a.tolist() != rng(0, "train-neg", 2).integers(0, 1000, 5).tolist()
    assert a.tolist() != rng(1, "train-neg", 1).integers(0, 1000, 5).tolist()


def test_atomic_files_get_the_usual_mode_not_mkstemps_0600(tmp_path) -> None:
    import os
    import stat

    from mdr.io import write_text

    mask = os.umask(0)
    os.umask(mask)
    write_text(tmp_path / "a.txt", "x")
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o666 & ~mask != 0o600
