#!/usr/bin/env bash
# The rehearsal (issue #10): every `#| notest` cell of every notebook, the cells a learner runs on Colab, runs as one
# pytest item on this CPU, against a local replica of the Hugging Face Hub (sft_course.offline.local_hub). Each
# notebook runs in one shell, its other cells running first as setup, in order. SFT_COURSE_REHEARSAL=1 makes
# `can_run(...)` say yes and swaps the GPU profiles for CPU ones (config.REHEARSAL_SWAP). See tools/rehearsal.py.
#
#   bash tools/rehearse.sh                               # every notebook in nbs/
#   bash tools/rehearse.sh nbs/04_training.ipynb -x      # some notebooks, with extra pytest options
#
# Ends with `rehearsal: N notest cells ran, M skipped` (each skip and failure named above it) and pytest's closing line.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" TOKENIZERS_PARALLELISM=false MPLBACKEND=Agg

# Build (or check) the replica in its own process, then point the Hugging Face cache variables at it: the libraries
# read them when they are imported, so they must be set before pytest starts.
exports=$(python tools/rehearsal.py env)
eval "$exports"
export SFT_COURSE_REHEARSAL=1
export PYTHONPATH="tools${PYTHONPATH:+:$PYTHONPATH}"

paths=() opts=()
for a in "$@"; do if [[ "$a" == *.ipynb || -d "$a" ]]; then paths+=("$a"); else opts+=("$a"); fi; done
[ ${#paths[@]} -gt 0 ] || paths=(nbs)
python -m pytest -p rehearsal -p no:cacheprovider -q -rN "${opts[@]}" "${paths[@]}"
