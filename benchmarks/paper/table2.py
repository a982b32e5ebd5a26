"""Table 2: AUC and NDCG@10 of Wide&Deep, PNN, DeepFM, beta-VAE, ABAE, DIN++ and MDR.

    python -m benchmarks.table2 [--dataset synthetic-small|cloth|toys|office|PROC]
                                [--seeds 3] [--epochs N] [--quick] [--jobs N] [--force]

Every model and seed on one prepared dataset, the same training samples and
the same stored evaluation lists; plain DIN on id embeddings as an extra
reference row. Output: ``results/<dataset>/table2.csv``, ``.md``, ``.tex``
and a manifest; run folders under ``results/<dataset>/runs/`` (reused when
finished, resumed when interrupted).
"""

from __future__ import annotations

from benchmarks.common import run_script
from benchmarks.paper.tables import parse_options, run_table

MODELS = ("wide_deep", "pnn", "deepfm", "beta_vae", "abae", "din_pp", "din", "mdr")


def main(argv: list[str] | None = None) -> int:
    opts = parse_options(argv, __doc__)
    run_table("table2", "Table 2: AUC and NDCG@10", MODELS, "table2.csv", opts, ours="mdr")
    return 0


if __name__ == "__main__":
    run_script("table2", main)
