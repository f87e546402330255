#!/usr/bin/env bash
# The GPU rows of docs/performance.md in one go, on one CUDA GPU (about 8 minutes on an H200):
#
#   GAN_DATA_ROOT=/path/to/data bash scripts/bench_gpu.sh [OUT_DIR]
#
# Each step has its own time limit, so one that fails or hangs costs only its own row; every step's output
# goes to OUT_DIR/bench_gpu.log (default outputs/bench_gpu), the JSON summaries to OUT_DIR/summary.jsonl.
# PYTHON picks the interpreter (default python); SMOKE=1 runs every step tiny on the CPU, to check the script
# itself before a GPU is rented. The steps, most important first:
#   1. framework vs a bare eager fp32 loop, mnist_paper: with model.cuda_graph=true, then eager fp32
#      (the GPU target: >= 1.0x)
#   2. the same for mnist_pytorch_gan
#   3. an epoch split into training and each callback's epoch-end work (the Parzen share), both modes
#   4. mnist_paper for 25 epochs with EMA in both modes, timed, then the full Parzen protocol on each run's
#      raw G and EMA (the two modes train the same model)
#   5. the framework with bf16-mixed, and with torch.compile, vs the bare eager fp32 loop, mnist_paper
set -u
out=${1:-outputs/bench_gpu}
data=${GAN_DATA_ROOT:-data}   # the folder holding MNIST/raw/ (as paths.data_dir)
py=${PYTHON:-python}
device=cuda trainer=gpu steps=400 long_steps=700 repeats=3 epochs=25 epoch_epochs=3 tiny=()
if [ "${SMOKE:-0}" = 1 ]; then
    device=cpu trainer=cpu steps=5 long_steps=5 repeats=1 epochs=1 epoch_epochs=1
    tiny=(+trainer.limit_train_batches=3 +trainer.limit_val_batches=1 callbacks.parzen.val_samples=100
          callbacks.parzen.val_points=50 callbacks.parzen.select_points=50)
fi
mkdir -p "$out"
log=$out/bench_gpu.log
summary=$out/summary.jsonl

source "$(dirname "$0")/timed_step.sh"
step() {  # step NAME SECONDS COMMAND...: timed_step, then the command's ratio lines and its JSON line
    local name=$1
    timed_step "$@"
    grep -E '^(framework / bare|epoch \(training|\{)' "$out/$name.out" | tail -n 3
    grep -E '^\{' "$out/$name.out" | tail -n 1 | sed "s/^{/{\"step\": \"$name\", /" >>"$summary"
}

[ "$device" = cuda ] && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$log"
$py -c "import torch, lightning; print('torch', torch.__version__, 'lightning', lightning.__version__)" | tee -a "$log"

bench=(scripts/bench_train.py --device "$device" --data-root "$data" --repeats "$repeats")
graph=(); [ "$device" = cuda ] && graph=(model.cuda_graph=true)  # CUDA graphs need a GPU: SMOKE runs eager
step paper_graph 100 $py "${bench[@]}" --experiment mnist_paper --steps "$steps" --bare-eager "${graph[@]}"
step paper_fp32 100 $py "${bench[@]}" --experiment mnist_paper --steps "$steps" --bare-eager
step pytorch_gan_graph 100 $py "${bench[@]}" --experiment mnist_pytorch_gan --steps "$long_steps" "${graph[@]}"
step pytorch_gan_fp32 100 $py "${bench[@]}" --experiment mnist_pytorch_gan --steps "$long_steps"
for mode in graph eager; do
    extra=(); [ $mode = graph ] && extra=("${graph[@]}")
    step epoch_paper_$mode 90 $py scripts/bench_epoch.py --device "$device" --data-root "$data" --experiment mnist_paper \
        --epochs "$epoch_epochs" "${tiny[@]}" "${extra[@]}"
done

for mode in graph eager; do
    extra=(); [ $mode = graph ] && extra=("${graph[@]}")
    run=$out/mnist_paper_${epochs}_epochs_$mode
    rm -rf "$run"  # gan-train refuses a folder that holds an earlier run's checkpoints
    step train_paper_$mode 180 $py -m gan.train experiment=mnist_paper trainer="$trainer" trainer.max_epochs="$epochs" \
        model.ema_decay=0.9999 data.root="$data" hydra.run.dir="$run" callbacks.rich_progress_bar.refresh_rate=0 \
        test=false "${tiny[@]}" "${extra[@]}"
    $py - "$run" $mode <<'EOF' | tee -a "$log" | tee -a "$summary"
import sys, torch
ckpt = torch.load(f"{sys.argv[1]}/checkpoints/last.ckpt", map_location="cpu", weights_only=False)
seconds, epochs = float(ckpt["callbacks"]["Timer"]["time_elapsed"]["train"]), ckpt["epoch"] + 1
print(f'{{"step": "train_paper_{sys.argv[2]}", "train_seconds": {seconds:.1f}, "epochs": {epochs}, "seconds_per_epoch": {seconds / epochs:.3f}}}')
EOF
    evaluate=($py -m gan.eval ckpt_path="$run/checkpoints/last.ckpt" data.root="$data" trainer="$trainer" hydra.run.dir="$run/eval")
    step eval_raw_g_$mode 90 "${evaluate[@]}" use_ema=false
    step eval_ema_$mode 90 "${evaluate[@]}"
done

step paper_bf16 100 $py "${bench[@]}" --experiment mnist_paper --steps "$steps" --precision bf16-mixed --bare-eager
[ "${SMOKE:-0}" = 1 ] || step paper_compile 150 $py "${bench[@]}" --experiment mnist_paper --steps "$steps" --repeats 1 --compile --bare-eager
echo "=== done" | tee -a "$log"
