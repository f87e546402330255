#!/usr/bin/env bash
# The GPU numbers of fused multi-seed training (docs/fused.md) in one command, on one CUDA GPU:
#
#   GAN_DATA_ROOT=/path/to/data bash scripts/fused_gpu.sh [OUT_DIR]
#
# Most important first, each step under its own time limit (a failing or hanging step costs only its own numbers):
#   1. bench_fused.py with model.cuda_graph=true: N = 1, 2, 4, 8 fused members vs runs one after another
#      (goal: >= 5x the aggregate steps/s of 8 sequential graphed runs at N = 8)                     ~3 min
#   2. time_to_parzen.py: one seed's wall time to hold >= 225 nats (goal <= 5 min)                    <= 7 min
#   3. reproduce_table1.py --fused: Table 1 on MNIST over seeds 1-5 with the 800-epoch recipe, as one fused
#      model (goal <= 15 min), mean +- sd over seeds                                                  the rest
# Steps 2 and 3 resume where they stopped: running the same command again (same OUT_DIR) goes on from the last
# checkpoints, so a lease shorter than the whole finishes it over several calls. Everything a step prints goes to
# OUT_DIR/<step>.out and OUT_DIR/fused_gpu.log, the results to OUT_DIR/bench_fused.json, OUT_DIR/time_to_225/
# time_to_parzen.md and OUT_DIR/table1/table1.md. SMOKE=1 runs every step tiny on the CPU (checks the script).
set -u
out=${1:-outputs/fused_gpu}
data=${GAN_DATA_ROOT:-data}   # the folder holding MNIST/raw/
py=${PYTHON:-python}
device=cuda steps=1000 repeats=2 members=(1 2 4 8) run=(trainer=gpu model.cuda_graph=true)
epochs=800 stages=(600:0.9999 700:0.99995) every=25 score_from=400 seeds=(1 2 3 4 5) limits=(240 420 3600)
if [ "${SMOKE:-0}" = 1 ]; then
    device=cpu steps=3 repeats=1 members=(1 2) epochs=1 stages=(1:0.9) every=1 score_from=0 seeds=(1 2) limits=(300 300 600)
    run=(trainer=cpu debug=fast data.val_size=200 data.verify=false data.download=false)
fi
mkdir -p "$out"
log=$out/fused_gpu.log

source "$(dirname "$0")/timed_step.sh"

[ "$device" = cuda ] && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$log"
graph=(); [ "$device" = cuda ] && graph=(--cuda-graph)
timed_step bench_fused "${limits[0]}" $py scripts/bench_fused.py --device "$device" "${graph[@]}" --members "${members[@]}" \
    --steps "$steps" --repeats "$repeats" --data-root "$data"
grep -E '^(N=|\{)' "$out/bench_fused.out" | tee -a "$log"
grep -E '^\{' "$out/bench_fused.out" | tail -n 1 >"$out/bench_fused.json"

timed_step time_to_225 "${limits[1]}" $py scripts/time_to_parzen.py --target 225 --stages "${stages[@]}" --every "$every" \
    --score-from "$score_from" --out "$out/time_to_225" --data-root "$data" -- "${run[@]}"
tail -n 20 "$out/time_to_225.out" | tee -a "$log"

timed_step table1_fused "${limits[2]}" $py scripts/reproduce_table1.py --fused --datasets mnist --seeds "${seeds[@]}" \
    --epochs "$epochs" --ema-decay 0.99995 --data-root "$data" --out "$out/table1" -- "${run[@]}" \
    callbacks.parzen.val_samples=2000
cat "$out/table1/table1.md" 2>/dev/null | tee -a "$log"
echo "=== done" | tee -a "$log"
