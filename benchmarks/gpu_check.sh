#!/usr/bin/env bash
# GPU check (issue 6): a CUDA smoke of training on the Cloth-sized shop plus the speed
# figures, prepared to finish in under 8 minutes on one H100/H200.
#
#   bash benchmarks/gpu_check.sh [RESULTS_DIR]        (default: results/speed)
#
# Steps: synth + prepare the Cloth-sized shop at 64x64 (timed), one MDR epoch with bf16
# autocast on CUDA (timed, checkpointed), full-ranking evaluation of all its users (timed),
# and benchmarks/speed_train.py on the small shop. A summary lands in
# RESULTS_DIR/gpu-check-<gpu>.json. Wheels in .whl/ (gensim, smart_open) are installed
# first when the machine lacks them. MDR_GPU_SIZE=tiny MDR_DEVICE=cpu dry-runs it anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."
RESULTS=${1:-results/speed}
SIZE=${MDR_GPU_SIZE:-cloth}
DEVICE=${MDR_DEVICE:-cuda}
WORK=${MDR_GPU_WORK:-/tmp/mdr-gpu-check}
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 MDR_DATA="$WORK/data"
if ! $PY -c "import gensim" 2>/dev/null && [ -d .whl ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$RESULTS" "$WORK"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"

echo "== 1. data: synth + prepare the $SIZE shop at 64x64"
$PY benchmarks/speed_data.py --size "$SIZE" --image-size 64 --work "$WORK/shop" --keep \
    --results "$RESULTS"

echo "== 2. one MDR epoch on $DEVICE (bf16 autocast)"
rm -rf "$WORK/run"
t0=$(date +%s.%N)
$PY -m mdr.cli train -q --config benchmarks/configs/mdr_amazon_cloth.yaml \
    --data "$WORK/shop/proc" --out "$WORK/run" --epochs 1 --device "$DEVICE" \
    --set train.amp=true --set train.full_ranking=false > "$WORK/train.json"
t1=$(date +%s.%N)

echo "== 3. full-ranking evaluation of all users on $DEVICE"
$PY -m mdr.cli evaluate "$WORK/run" --split test --full-ranking --device "$DEVICE" --json \
    > "$WORK/eval.json"
t2=$(date +%s.%N)

echo "== 4. speed_train on the small shop"
$PY benchmarks/speed_train.py --dataset synthetic-small --device "$DEVICE" --amp \
    --steps 10 --naive-steps 2 --full-users 3000 --results "$RESULTS"

$PY - "$WORK" "$RESULTS" "$t0" "$t1" "$t2" "$DEVICE" <<'PY'
import json, re, sys
from pathlib import Path
from mdr import io as mio
from mdr.provenance import device_name, manifest
work, results, t0, t1, t2, device = Path(sys.argv[1]), Path(sys.argv[2]), *map(float, sys.argv[3:6]), sys.argv[6]
epoch = json.loads((work / "run" / "metrics.jsonl").read_text().splitlines()[0])
name = device_name(device)
summary = manifest(
    benchmark="gpu_check", device=name,
    train_command_s=round(t1 - t0, 1),
    epoch={k: epoch[k] for k in ("train_samples", "train_s", "valid_s", "epoch_s", "samples_per_s")},
    full_ranking_eval_command_s=round(t2 - t1, 1),
    test=json.loads((work / "eval.json").read_text()),
    targets={"epoch_s": 60, "full_ranking_all_users_s": 30},
)
slug = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()[:40]
mio.write_json(results / f"gpu-check-{slug}.json", summary)
print(json.dumps(summary, indent=1))
PY
