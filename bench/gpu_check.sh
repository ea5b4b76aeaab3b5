#!/usr/bin/env bash
# GPU acceptance for ftlib: about 10 minutes on one datacenter GPU (make gpu-check). Needs a CUDA build
# of torch in the environment (make install CONSTRAINTS= keeps your own). Prints a PASS or FAIL row per
# check and a table of figures; writes them to $W/figures.md. Exit status 1 when a check fails.
#
#   bash bench/gpu_check.sh                 # W defaults to a new temporary folder
#   W=/tmp/gpu PY=.venv/bin/python bash bench/gpu_check.sh
set -u
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
BIN=$(dirname "$PY")
W=${W:-$(mktemp -d)}
mkdir -p "$W"
export FTLIB_CACHE=$W/cache FTLIB_RUNS=$W/runs WANDB_MODE=offline MPLBACKEND=Agg PYTHONUNBUFFERED=1
failed=0
row() { echo "$1 $2 ($3)"; echo "| $2 | $1 | $3 |" >> "$W/shell-rows.md"; [ "$1" = PASS ] || failed=1; }

"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA'; p = torch.cuda.get_device_properties(0);
print(f'torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.device_count()} x {p.name}, capability {p.major}.{p.minor}')" \
  || { echo "FAIL no CUDA device visible to torch"; exit 1; }

# 1-4. recipes on the GPU, real-size steps on the flash kernel, fused vs explicit attention, separation
"$PY" bench/gpu_check.py --work "$W/python" || failed=1

# 5. every notebook's smoke run on the GPU
for nb in notebooks/*.ipynb; do
  name=$(basename "$nb" .ipynb); start=$SECONDS
  if timeout 600 "$BIN/ftlib" run "$nb" --preset smoke --runs-dir "$W/notebooks" > "$W/$name.log" 2>&1; then
    row PASS "notebook $name (smoke)" "$((SECONDS - start)) s"
  else
    row FAIL "notebook $name (smoke)" "$((SECONDS - start)) s, log $W/$name.log"
  fi
done

# 6. two processes over NCCL against one process with the same global batch (two or more GPUs)
gpus=$("$PY" -c "import torch; print(torch.cuda.device_count())")
if [ "$gpus" -ge 2 ]; then
  common=(--preset tiny --set train.steps=4 --set train.warmup_steps=1 --set evaluation.songs=0
          --set 'evaluation.context_cropsizes=[]' --set 'model.overrides={"dropout": 0}' --set train.mixed_precision=no)
  start=$SECONDS
  if "$BIN/ftlib" train "${common[@]}" --set train.batch_size=2 --run-dir "$W/ddp-one" > "$W/ddp-one.log" 2>&1 &&
     "$BIN/torchrun" --nproc_per_node 2 -m ftlib train "${common[@]}" --set train.batch_size=1 --run-dir "$W/ddp-two" \
       > "$W/ddp-two.log" 2>&1 &&
     "$PY" - "$W" <<'PY'
import json, sys
from pathlib import Path
logs = {n: [json.loads(l) for l in (Path(sys.argv[1]) / n / "metrics.jsonl").read_text().splitlines()] for n in ("ddp-one", "ddp-two")}
one, two = ([r["loss"] for r in logs[n] if "loss" in r] for n in ("ddp-one", "ddp-two"))
print("losses", one, two)
assert len(one) == len(two) and all(abs(a - b) <= 1e-3 * abs(a) for a, b in zip(one, two)), "losses differ"
PY
  then row PASS "NCCL DDP on 2 GPUs equals one process (global batch 2)" "$((SECONDS - start)) s"
  else row FAIL "NCCL DDP on 2 GPUs equals one process (global batch 2)" "logs $W/ddp-*.log"; fi
else
  echo "SKIP NCCL DDP: one GPU here (the CPU test suite runs two processes over gloo)"
fi

# 7. the steps of one GPU-day for each GPU preset of the separation recipe, from measured step times
start=$SECONDS
if "$PY" bench/gpu_day.py > "$W/gpu_day.md" 2> "$W/gpu_day.log"; then
  row PASS "steps per GPU-day of the gpu presets (table $W/gpu_day.md)" "$((SECONDS - start)) s"
else
  row FAIL "steps per GPU-day of the gpu presets" "log $W/gpu_day.log"
fi
cat "$W/gpu_day.md"

cat "$W/shell-rows.md" >> "$W/python/figures.md" 2>/dev/null
echo "tables: $W/python/figures.md"
exit $failed
