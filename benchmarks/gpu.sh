#!/usr/bin/env bash
# The GPU check (docs/BENCHMARKS.md): 1. benchmarks/simulation_speed.py at full width, batch 128 (every
# row, fused update, torch.profiler) and batch 16 (ours, eager, ANN); 2. full-width VGG-16 trained on the
# carried CIFAR-10 subset with the paper's SGD, converted by the callback at T = 4 ... 512 on 2000 test images,
# then `test` on the same checkpoint with diagnostics. ~7 minutes on one H100/H200 with no network (at most
# ~9.5 if every step runs to its limit: run it as one call of up to 10 minutes).
#   bash benchmarks/prepare_gpu_payload.sh     # once, with data and network: .device_data/, .whl/
#   bash benchmarks/gpu.sh                      # on the GPU machine; results in $OUT, else ./gpu_results
#   DEVICE=cpu TINY=1 OUT=gpu_smoke_out bash benchmarks/gpu.sh   # CPU smoke test, tiny sizes (~1 min)
# Environment: OUT, DEVICE (cuda | cpu), TINY=1, PYTHON (python3), SUBSET_DIR (.device_data/cifar10_subset),
#   WHEEL_DIR (.whl: installed with --no-index when present), SIM_TIMEOUT / SIM2_TIMEOUT / TRAIN_TIMEOUT /
#   DIAG_TIMEOUT (seconds per step), TRAIN_EPOCHS (40; a quarter plain-ReLU warm-up), TRAIN_MAX_TIME
#   (00:00:02:00: whichever ends first), STEPS (default "sim train").
# Every step runs under `timeout`; a failed step is reported and the next one still runs. Outputs (flat,
#   at most 8 files): env.txt, gpu.log, sim_b*.json, train_/test_snn_results.json, train_metrics.csv, summary.txt.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="${OUT:-$ROOT/gpu_results}" && mkdir -p "$OUT" && OUT="$(cd "$OUT" && pwd)"
DEVICE="${DEVICE:-cuda}" TINY="${TINY:-0}" PY="${PYTHON:-python3}" WHEEL_DIR="${WHEEL_DIR:-$ROOT/.whl}"
SUBSET_DIR="${SUBSET_DIR:-$ROOT/.device_data/cifar10_subset}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/lsnn_gpu.XXXXXX")"
# PYTHONFAULTHANDLER: a step stopped by SIGABRT (SIG=ABRT) prints every thread's Python stack first
export PYTHONUNBUFFERED=1 PYTHONFAULTHANDLER=1 WANDB_MODE=offline WANDB_SILENT=true
STEPS="${STEPS:-sim train}"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec > >(tee -a "$OUT/gpu.log") 2>&1
TEE_PID=$! START=$(date +%s) FAILED=0
declare -a STATUS=()

step() {  # [SIG=ABRT] step NAME TIMEOUT CMD...: run, time and record the exit status of one step
    local name="$1" limit="$2" t0=$SECONDS rc
    shift 2
    printf '\n=== %s (limit %ss) %s ===\n' "$name" "$limit" "$(date -u +%H:%M:%S)"
    timeout --kill-after=10 -s "${SIG:-TERM}" "$limit" "$@"
    rc=$?
    echo "=== $name: exit $rc after $((SECONDS - t0)) s ==="
    STATUS+=("$name: exit $rc, $((SECONDS - t0)) s")
    [ $rc -eq 0 ] || FAILED=$((FAILED + 1))
    return $rc
}

# ---- packages missing on a bare machine (jsonargparse for the CLI, spikingjelly), from wheels ----
if compgen -G "$WHEEL_DIR/*.whl" >/dev/null; then
    echo "installing $(ls "$WHEEL_DIR"/*.whl | wc -l) wheels from $WHEEL_DIR (no index)"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$WORK/site" \
        "$WHEEL_DIR"/*.whl && export PYTHONPATH="$PYTHONPATH:$WORK/site"
fi

# ---- the machine ----------------------------------------------------------------------------
{
    date -u; uname -a; uptime
    command -v nvidia-smi >/dev/null && nvidia-smi
    "$PY" - <<'EOF'
import importlib, os, sys, torch
print("python", sys.version.split()[0], "torch", torch.__version__, "threads", torch.get_num_threads(), "cpus", os.cpu_count())
if torch.cuda.is_available():
    print("gpu", torch.cuda.get_device_name(0), "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version(),
          "cudnn.allow_tf32", torch.backends.cudnn.allow_tf32, "matmul.allow_tf32", torch.backends.cuda.matmul.allow_tf32)
for name in ("pytorch_lightning", "torchmetrics", "jsonargparse", "spikingjelly", "wandb"):
    try:
        print(name, getattr(importlib.import_module(name), "__version__", "?"))
    except Exception as exc:
        print(name, "MISSING:", type(exc).__name__, exc)
EOF
} 2>&1 | tee "$OUT/env.txt"

# ---- 1. the simulation benchmark ------------------------------------------------------------------
if [ "$TINY" = "1" ]; then
    SIM_A=(--width 0.0625 --batch-size 2 --T 4 --repeats 1 --chunks 1,2,4)
    SIM_B=(--width 0.0625 --batch-size 1 --T 4 --repeats 1 --chunks 1,4 --methods ours,eager,ann)
else
    SIM_A=(--width 1.0 --batch-size 128 --T 256 --repeats 3 --chunks 1,4,16,32,64,128,256 --profile)
    SIM_B=(--width 1.0 --batch-size 16 --T 256 --repeats 3 --chunks 1,4,16,64,256 --methods ours,eager,ann)
fi
if [[ " $STEPS " == *" sim "* ]]; then
    # --fused auto: if the Triton kernel cannot be built here, the rows run eager (warned, and
    # recorded as fused_build.unavailable_reason) instead of the step failing
    step "simulation benchmark, batch ${SIM_A[3]}" "${SIM_TIMEOUT:-150}" \
        "$PY" benchmarks/simulation_speed.py --device "$DEVICE" --fused auto "${SIM_A[@]}" --json "$OUT/sim_b${SIM_A[3]}.json"
    step "simulation benchmark, batch ${SIM_B[3]}" "${SIM2_TIMEOUT:-50}" \
        "$PY" benchmarks/simulation_speed.py --device "$DEVICE" --fused auto "${SIM_B[@]}" --json "$OUT/sim_b${SIM_B[3]}.json"
fi

# ---- 2. a short training run of full-width VGG-16 on a CIFAR-10 subset ----------------------------
if [ "$TINY" = "1" ]; then
    if [ ! -f "$SUBSET_DIR/train.npz" ]; then
        SUBSET_DIR="$WORK/cifar10_synthetic"
        "$PY" benchmarks/make_cifar_subset.py --synthetic --out "$SUBSET_DIR" --train 128 --test 32
    fi
    TRAIN=(--model.width 0.0625 --trainer.max_epochs 1 --model.relu_warmup_epochs 0
        --trainer.limit_train_batches 2 --trainer.limit_val_batches 1 --data.init_args.batch_size 32
        --data.init_args.num_workers 0 --snn.timesteps "[4, 8]" --snn.max_test_samples 16
        --snn.calibration_samples 32 --model.lr_scheduler.init_args.T_max 1)
else
    if [ ! -f "$SUBSET_DIR/train.npz" ]; then
        SRC="${LIGHTNING_SNN_CIFAR10:-$ROOT/../shared/data/cifar10}"
        [ -f "$SRC/train.npz" ] && "$PY" benchmarks/make_cifar_subset.py --src "$SRC" --out "$SUBSET_DIR"
    fi
    EPOCHS="${TRAIN_EPOCHS:-40}"  # a quarter of them plain-ReLU warm-up, as in the width study (2 of 8)
    TRAIN=(--model.width 1.0 --trainer.max_epochs "$EPOCHS" --model.relu_warmup_epochs $((EPOCHS / 4))
        --trainer.max_time "${TRAIN_MAX_TIME:-00:00:02:00}"
        --data.init_args.num_workers 8 --snn.max_test_samples 2000 --snn.calibration_samples 5000
        --snn.timesteps "[4, 8, 16, 32, 64, 128, 256, 512]" --model.lr_scheduler.init_args.T_max "$EPOCHS")
fi
# the paper's optimiser (its appendix A.1); the cosine schedule's T_max is set per size above
TRAIN+=(--model.optimizer torch.optim.SGD --model.optimizer.lr 0.01 --model.optimizer.momentum 0.9
    --model.optimizer.weight_decay 0.0005)
ACCEL=$([ "$DEVICE" = "cuda" ] && echo gpu || echo cpu)
COMMON=(-c configs/quickstart.yaml --data.init_args.data_dir "$SUBSET_DIR" --data.init_args.download false
    --model.arch vgg16 --trainer.accelerator "$ACCEL" --trainer.devices 1 --trainer.enable_progress_bar false
    --trainer.default_root_dir "$WORK/train" "${TRAIN[@]}")
if [[ " $STEPS " != *" train "* ]]; then
    STATUS+=("training: not asked for (STEPS=$STEPS)")
elif [ -f "$SUBSET_DIR/train.npz" ]; then
    # fit: train, then the conversion callback without diagnostics (the accuracy at every T)
    echo "training arguments: ${COMMON[*]}"  # benchmarks/collect_gpu.py reads the recipe from this line
    "$PY" -c "import numpy as np, sys; print('subset images:', *(f'{s} {len(np.load(f\"{sys.argv[1]}/{s}.npz\")[\"labels\"])}' for s in ('train', 'test')))" "$SUBSET_DIR"
    step "training: VGG-16 ${TRAIN[1]} width on $(basename "$SUBSET_DIR")" "${TRAIN_TIMEOUT:-230}" \
        "$PY" train.py fit "${COMMON[@]}" --run_name fullwidth --snn.diagnostics false \
        --trainer.logger pytorch_lightning.loggers.CSVLogger --trainer.logger.save_dir "$WORK/train"
    # deep log folders do not come back from the device machine: copy the results up
    RES=$(find "$WORK/train" -name 'snn_results*.json' | head -n 1)
    MET=$(find "$WORK/train" -name metrics.csv | head -n 1)
    [ -n "$RES" ] && cp "$RES" "$OUT/train_snn_results.json"
    [ -n "$MET" ] && cp "$MET" "$OUT/train_metrics.csv"
    # test: the same checkpoint converted again, with diagnostics (firing rates, synaptic operations,
    # energy, per-layer error at every T); stopped by SIGABRT, so a slow step shows where it was
    CKPT="$WORK/train/fullwidth/checkpoints/last.ckpt"
    if [ -f "$CKPT" ]; then
        SIG=ABRT step "diagnostics: the same checkpoint, test with --snn.diagnostics true" "${DIAG_TIMEOUT:-120}" \
            "$PY" train.py test "${COMMON[@]}" --ckpt_path "$CKPT" --snn.diagnostics true --trainer.logger false
        RES=$(find "$WORK/train" -name 'snn_results*.json' -newer "$CKPT" | xargs -r ls -t | head -n 1)
        [ -n "$RES" ] && cp "$RES" "$OUT/test_snn_results.json"
    fi
else
    echo "NOTE: no CIFAR-10 subset at $SUBSET_DIR (run benchmarks/prepare_gpu_payload.sh): training skipped"
    STATUS+=("training: skipped (no data)")
fi

{
    echo "gpu.sh on $DEVICE (TINY=$TINY), $(($(date +%s) - START)) s in all"
    printf '%s\n' "${STATUS[@]}"
    for f in "$OUT"/sim_b*.json; do
        [ -f "$f" ] && "$PY" -c "import json,sys; d=json.load(open(sys.argv[1])); print(sys.argv[1].rsplit('/',1)[-1], json.dumps(d['ratios']), 'checks', json.dumps(d['checks']), 'fused', json.dumps(d.get('fused_build')))" "$f"
    done
    for f in "$OUT"/t*_snn_results.json; do
        [ -f "$f" ] && "$PY" -c "import json,sys; d=json.load(open(sys.argv[1])); print(sys.argv[1].rsplit('/',1)[-1], 'ANN acc', d['ann_acc'], 'SNN acc', d['snn_acc'], 'seconds', d['seconds'])" "$f"
    done
} | tee "$OUT/summary.txt"
rm -rf "$WORK"
exec 1>&- 2>&- # close our end of the log pipe, so tee writes everything before we return
wait "$TEE_PID" 2>/dev/null || true
exit "$FAILED"
