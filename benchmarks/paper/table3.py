"""Table 3: MDR with and without the information constraint (eta = 0), and where MDR's gain
comes from: the ablation table beside it.

    python -m benchmarks.table3 [--dataset ...] [--seeds 3] [--quick] [--jobs N] [--force]

Runs ``mdr``, the ``mdr_wo_ic`` ablation (Table 3) and the ablations ``mdr_wo_ws`` (no weak
labels), ``mdr_no_fusion`` (r = [s, z]: no Algorithm 1), ``mdr_image_only``,
``mdr_text_only`` and ``mdr_dense_aspects`` (Eq. 14 through one dense fc instead of one
fc_j per slot), every one under the protocol and seeds of Table 2 (MDR's runs are Table
2's: same config, same hash, reused). Output: ``results/<dataset>/table3.*`` and
``results/<dataset>/ablations.*``.
"""

from __future__ import annotations

import time

from benchmarks.common import run_script
from benchmarks.paper.tables import parse_options, run_models, write_table

TABLE3 = ("mdr", "mdr_wo_ic")
ABLATIONS = (
    "mdr",
    "mdr_wo_ws",
    "mdr_no_fusion",
    "mdr_image_only",
    "mdr_text_only",
    "mdr_dense_aspects",
)


def main(argv: list[str] | None = None) -> int:
    opts = parse_options(argv, __doc__)
    t0 = time.perf_counter()
    models = list(dict.fromkeys([*TABLE3, *ABLATIONS]))
    proc, short, jobs, results = run_models(models, opts, "table3")
    write_table(
        "table3",
        "Table 3: effectiveness of the information constraint",
        TABLE3,
        "table3.csv",
        opts,
        proc,
        short,
        jobs,
        results,
        "mdr",
        t0,
    )
    if any(m in results for m in ABLATIONS[1:]):
        write_table(
            "ablations",
            "Ablations: where MDR's gain comes from",
            ABLATIONS,
            "table3.csv",
            opts,
            proc,
            short,
            jobs,
            results,
            "mdr",
            t0,
            notes=[
                "Each ablation changes one thing of MDR (benchmarks/configs, "
                "`ablations:`; with --tuned: of the tuned MDR, nothing retuned); "
                "the comparisons pair MDR with each, seed by seed and user by user."
            ],
        )
    return 0


if __name__ == "__main__":
    run_script("table3", main)
