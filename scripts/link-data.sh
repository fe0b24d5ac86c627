#!/usr/bin/env bash
# Point data/benchmarks at a directory holding the benchmark files the specs read
# (HumanEval.jsonl.gz, mbpp.jsonl, cruxeval.jsonl, humaneval_codegen16b_100samples.jsonl, ...),
# and data/seed-artifacts at the original study's artifacts beside it (HE-R, MBPP-R).
#   scripts/link-data.sh [DIR]     # default: ../shared/data/benchmarks beside the checkout
# Without such a directory, download the files yourself into data/benchmarks/ (the README
# lists their sources); nothing here is committed.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
src="${1:-$root/../shared/data/benchmarks}"
if [ ! -d "$src" ]; then
  echo "link-data.sh: no directory $src; download the benchmarks into $root/data/benchmarks instead" >&2
  exit 1
fi
mkdir -p "$root/data"
if [ -e "$root/data/benchmarks" ] && [ ! -L "$root/data/benchmarks" ]; then
  echo "link-data.sh: $root/data/benchmarks exists and is not a link; leaving it" >&2
  exit 0
fi
ln -sfn "$(cd "$src" && pwd)" "$root/data/benchmarks"
echo "data/benchmarks -> $(cd "$src" && pwd)" >&2
# The original study's artifacts (HE-R / MBPP-R buggy programs), when they sit beside it.
artifacts="$src/../seed-artifacts"
if [ -d "$artifacts" ] && { [ ! -e "$root/data/seed-artifacts" ] || [ -L "$root/data/seed-artifacts" ]; }; then
  ln -sfn "$(cd "$artifacts" && pwd)" "$root/data/seed-artifacts"
  echo "data/seed-artifacts -> $(cd "$artifacts" && pwd)" >&2
fi
