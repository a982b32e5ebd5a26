#!/usr/bin/env bash
# GPU check: a CUDA smoke of training on the Cloth-sized shop, a torchrun/DDP step
# and the speed suite, prepared to finish in under 8 minutes on one H100/H200.
#
#   bash benchmarks/performance/gpu_check.sh [RESULTS_DIR]        (default: results/speed)
#
# Steps: 1. synth + prepare the Cloth-sized shop at 64x64 (benchmarks.speed_data: wall time
# and peak memory, data-<size>.json); 2. one MDR epoch with bf16
# autocast on CUDA (timed, checkpointed), then the same epoch and seed in fp32 (their test
# GAUC compared); 3. full-ranking evaluation of all its users (timed);
# 4. a few steps under torchrun with DistributedDataParallel (nccl; MDR_GPU_NPROC processes,
# default 1), then --resume for one more epoch. A summary lands in
# RESULTS_DIR/gpu-check-<gpu>.json before 5. the speed suite (python -m benchmarks.speed --device cuda
# --skip-data, --quick in a dry run) writes its figures into RESULTS_DIR.
# Wheels in .whl/ (gensim, smart_open, deepctr-torch) are installed first when the machine
# lacks gensim.
#
# Dry run anywhere (CPU, gloo, the tiny shop, a few minutes on 2 cores):
#   MDR_GPU_SIZE=tiny MDR_DEVICE=cpu bash benchmarks/performance/gpu_check.sh /tmp/gpu-dry
# Knobs: MDR_GPU_WORK (scratch, default /tmp/mdr-gpu-check), MDR_GPU_NPROC (torchrun
# processes), MDR_GPU_REPEATS (bf16 and fp32 epochs of the same seed, default 1), MDR_SPEED_ARGS (extra arguments for speed.py), MDR_SKIP_SPEED=1 (no step 5).
set -euo pipefail
cd "$(dirname "$0")/../.."
RESULTS=${1:-results/speed}
SIZE=${MDR_GPU_SIZE:-cloth}
DEVICE=${MDR_DEVICE:-cuda}
WORK=${MDR_GPU_WORK:-/tmp/mdr-gpu-check}
NPROC=${MDR_GPU_NPROC:-1}
REPEATS=${MDR_GPU_REPEATS:-1}  # bf16 and fp32 epochs of the same seed: GPU kernels are not
                               # bitwise deterministic, so repeats give each precision's spread
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
now() { date +%s.%N; }
CFG=benchmarks/configs/mdr_amazon.yaml  # the real-data config: 64x64 images, bf16 on CUDA
SHOP="$WORK/shop"

echo "== 1. data: synth + prepare the $SIZE shop at 64x64 (wall time, peak memory)"
t_data0=$(now)
if [ ! -f "$SHOP/proc/dataset.json" ]; then
  rm -rf "$SHOP"
  $PY -m benchmarks.speed_data --size "$SIZE" --image-size 64 --work "$SHOP" --keep \
      --results "$RESULTS"
fi
t_data1=$(now)

echo "== 2. one MDR epoch on $DEVICE (bf16 autocast)"
rm -rf "$WORK/run"
t0=$(now)
$PY -m mdr.cli train -q --config "$CFG" --data "$SHOP/proc" --out "$WORK/run" --epochs 1 \
    --device "$DEVICE" --set train.amp=true --set train.full_ranking=false > "$WORK/train.json"
t1=$(now)

echo "== 2b. the same epoch and seed in fp32 (bf16 against fp32: test GAUC), $REPEATS time(s)"
for i in $(seq 1 "$REPEATS"); do
  for amp in false true; do
    [ "$amp" = true ] && [ "$i" = 1 ] && continue  # the first bf16 run is step 2's
    out="$WORK/run-$amp-$i"; rm -rf "$out"
    $PY -m mdr.cli train -q --config "$CFG" --data "$SHOP/proc" --out "$out" --epochs 1 \
        --device "$DEVICE" --set train.amp=$amp --set train.full_ranking=false > /dev/null
  done
done

echo "== 3. full-ranking evaluation of all users on $DEVICE"
t1e=$(now)
$PY -m mdr.cli evaluate "$WORK/run" --split test --full-ranking --device "$DEVICE" --json \
    > "$WORK/eval.json"
t2=$(now)

echo "== 4. torchrun: $NPROC process(es), DistributedDataParallel, 10 steps, then --resume"
rm -rf "$WORK/ddp"
DDP=(--config "$CFG" --data "$SHOP/proc" --out "$WORK/ddp" --device "$DEVICE" --max-steps 10
     --set train.amp=true --set train.full_ranking=false -q)
$PY -m torch.distributed.run --standalone --nproc_per_node="$NPROC" -m mdr.cli train \
    "${DDP[@]}" --epochs 1 > "$WORK/ddp1.log"
$PY -m torch.distributed.run --standalone --nproc_per_node="$NPROC" -m mdr.cli train \
    "${DDP[@]}" --epochs 2 --resume > "$WORK/ddp2.log"
t3=$(now)

$PY - "$WORK" "$RESULTS" "$DEVICE" "$NPROC" "$t_data0" "$t_data1" "$t0" "$t1" "$t1e" "$t2" \
    "$t3" "$REPEATS" <<'PY'
import json, re, sys
from pathlib import Path
from mdr import io as mio
from mdr.provenance import device_name, manifest
work, results, device, nproc = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
td0, td1, t0, t1, t1e, t2, t3 = map(float, sys.argv[5:12])
repeats = int(sys.argv[12])
def rows(run):
    return [json.loads(x) for x in (work / run / "metrics.jsonl").read_text().splitlines()]
timing = ("train_samples", "train_s", "valid_s", "epoch_s", "samples_per_s")
epoch, ddp = rows("run")[0], rows("ddp")
ddp_cfg = (work / "ddp" / "config.yaml").read_text()
assert [r["epoch"] for r in ddp] == [1, 2], "torchrun --resume did not add epoch 2"
assert f"world_size: {nproc}" in ddp_cfg and (work / "ddp" / "DONE").is_file()
# the same seed and epoch under bf16 autocast and in fp32: their test GAUC on the lists,
# each precision `repeats` times (the spread within a precision is the GPU's own noise)
def test_gauc(run):
    return json.loads((work / run / "test.json").read_text())["gauc"]
runs = {"bf16": ["run"] + [f"run-true-{i}" for i in range(2, repeats + 1)],
        "fp32": [f"run-false-{i}" for i in range(1, repeats + 1)]}
gauc = {k: [test_gauc(r) for r in v] for k, v in runs.items()}
mean = {k: sum(v) / len(v) for k, v in gauc.items()}
precision = {"repeats": repeats, "bf16_test_gauc": gauc["bf16"], "fp32_test_gauc": gauc["fp32"],
             "abs_diff_of_means": abs(mean["bf16"] - mean["fp32"]),
             "spread_within": {k: max(v) - min(v) for k, v in gauc.items()},
             "fp32_epoch": {k: rows("run-false-1")[0][k] for k in timing}}
name = device_name(device)
summary = manifest(
    benchmark="gpu_check", device=name,
    data_prepare_s=round(td1 - td0, 1),
    train_command_s=round(t1 - t0, 1),
    epoch={k: epoch[k] for k in timing},
    full_ranking_eval_command_s=round(t2 - t1e, 1),
    bf16_vs_fp32=precision,
    test=json.loads((work / "eval.json").read_text()),
    ddp={"nproc": nproc, "backend": re.search(r"backend: (\w+)", ddp_cfg).group(1),
         "commands_s": round(t3 - t2, 1), "epochs": [{k: r[k] for k in timing} for r in ddp]},
    targets={"epoch_s": 60, "full_ranking_all_users_s": 30, "bf16_vs_fp32_gauc": 0.005},
)
slug = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()[:40]
mio.write_json(results / f"gpu-check-{slug}.json", summary)
print(json.dumps(summary, indent=1))
PY

if [ "${MDR_SKIP_SPEED:-0}" = 1 ]; then
  echo "== 5. speed suite skipped (MDR_SKIP_SPEED=1)"
else
  echo "== 5. speed suite: python -m benchmarks.speed --device $DEVICE (data timed in step 1)"
  SPEED=(--skip-data); [ "$SIZE" = tiny ] && SPEED+=(--quick)
  # shellcheck disable=SC2086  # MDR_SPEED_ARGS is a list of words
  $PY -m benchmarks.speed --device "$DEVICE" --results "$RESULTS" "${SPEED[@]}" \
      ${MDR_SPEED_ARGS:-}
fi
echo "gpu_check: done, figures in $RESULTS"
