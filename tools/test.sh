#!/usr/bin/env bash
# The course's test command (README "Quick start"; .ci/run and the GitHub test workflow call it).
# 1. notebooks are clean and the library is exported from them (no diff after nbdev-clean / nbdev-export),
# 2. derived parts (setup cells, chapter map, README.md) match pyproject.toml and nbs/index.ipynb,
# 3. every notebook runs (nbdev-test), 4. tests/ passes. The Hub is switched off throughout.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" TOKENIZERS_PARALLELISM=false MPLBACKEND=Agg
export SFT_COURSE_CACHE="${SFT_COURSE_CACHE:-$(mktemp -d)/sft-course-cache}"
# Runs log to no tracker while testing (the learner's default is trackio where installed: chapter 3's default_report_to).
export SFT_COURSE_REPORT_TO="${SFT_COURSE_REPORT_TO:-none}"

if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  before=$(git status --porcelain)
  nbdev-clean >/dev/null
  nbdev-export
  after=$(git status --porcelain)
  if [ "$before" != "$after" ]; then
    echo "nbdev-clean/nbdev-export changed the tree: commit the cleaned notebooks and the exported library." >&2
    git status --porcelain >&2; git --no-pager diff --stat >&2
    exit 1
  fi
fi
python tools/nbsync.py --check
python tools/make_samples.py --check
python tools/lesson_share.py --check >/dev/null  # a lesson's visible library code stays under a quarter of its lines
echo "== nbdev-test"
nbdev-test --n-workers "${NBDEV_TEST_WORKERS:-2}" --timing
echo "== pytest"
python -m pytest tests/ -q -ra --durations=20 -n "${PYTEST_WORKERS:-2}" --dist loadfile "$@"  # a test file stays on one worker
