"""Table 3: MDR with and without the information constraint (eta = 0).

    python benchmarks/table3.py [--dataset ...] [--seeds 3] [--quick] [--jobs N] [--force]

Runs ``mdr`` and the ``mdr_wo_ic`` ablation (reusing MDR runs that Table 2
already finished: same config, same hash). Output: ``results/<dataset>/table3.*``.
"""

from __future__ import annotations

import sys

from tables import parse_options, run_table

MODELS = ("mdr", "mdr_wo_ic")


def main(argv: list[str] | None = None) -> int:
    opts = parse_options(argv, __doc__)
    run_table("table3", "Table 3: effectiveness of the information constraint", MODELS,
              "table3.csv", opts, compare=("mdr", ["mdr_wo_ic"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
