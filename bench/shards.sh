#!/usr/bin/env bash
# Sharding benchmark (not a timed test): verify CodeGen samples for HumanEval
# with `execute`, unsharded and in shards, side by side in one run; then add
# problems and rerun, which for the sharded stage runs only the new shards.
# With a Slurm up (scripts/setup-slurm.sh), the sharded stage also runs
# through `--executor slurm`, and its artifact is compared with the local one.
#
#   bench/shards.sh [PROBLEMS] [MORE] [ROWS]   # default 20 problems (2,000 samples), +2, shards of 250
#
# Needs the benchmark files (../shared/data, or TW_BENCHMARKS) and the debug
# tw the tests build (`cargo build`).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PROBLEMS=${1:-20}
MORE=${2:-2}
ROWS=${3:-250}
DATA=${TW_BENCHMARKS:-$ROOT/../shared/data/benchmarks}
TW=${TW:-$ROOT/target/debug/tw}
[ -x "$TW" ] || cargo build --bin tw >&2
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

spec() { # problems stage_suffix: the first N problems in the samples file's order, so
  # that N + MORE appends rows to N's table
  local ids; ids=$(head -n "$1" "$WORK/order" | sed "s/.*/'&'/" | paste -sd, -)
  cat <<EOF
experiment: shards
stages:
  humaneval:
    kind: load_benchmark
    params: { benchmark: humaneval, path: $DATA/HumanEval.jsonl.gz }
  samples:
    kind: load_samples
    inputs: { problems: humaneval.problems }
    params: { path: $DATA/humaneval_codegen16b_100samples.jsonl, format: codet }
  subset:
    kind: filter
    inputs: { rows: samples.candidates }
    params: { where: "task_id IN ($ids)" }
  verify:
    kind: execute
    inputs: { candidates: subset.rows, tests: humaneval.tests }
    params: { candidate_id: candidate, input_format: tagged, expected_format: tagged, timeout: 3 }
$2
EOF
}
shard="    shard: { rows: $ROWS }"

secs() { # spec cache -> wall seconds of `tw run`
  local s e; s=$(date +%s%N)
  TW_CACHE_DIR="$2" "$TW" run "$1" --no-progress -j 1 ${3:-} >"$WORK/log" 2>&1 || { cat "$WORK/log" >&2; exit 1; }
  e=$(date +%s%N); echo "scale=2; ($e - $s) / 1000000000" | bc
}

# The problems in the order their samples appear in the file.
printf 'experiment: shards\nstages:\n  humaneval:\n    kind: load_benchmark\n    params: { benchmark: humaneval, path: %s/HumanEval.jsonl.gz }\n  samples:\n    kind: load_samples\n    inputs: { problems: humaneval.problems }\n    params: { path: %s/humaneval_codegen16b_100samples.jsonl, format: codet }\n' "$DATA" "$DATA" > load.yaml
TW_CACHE_DIR="$WORK/plain" "$TW" run load.yaml --no-progress >/dev/null 2>&1
TW_CACHE_DIR="$WORK/plain" "$TW" export load.yaml samples.candidates --format jsonl \
  | python3 -c 'import json, sys
seen = []
for line in sys.stdin:
    t = json.loads(line)["task_id"]
    if t not in seen: seen.append(t)
print("\n".join(seen))' > "$WORK/order"
spec "$PROBLEMS" "" > plain.yaml
spec "$PROBLEMS" "$shard" > sharded.yaml
spec $((PROBLEMS + MORE)) "" > plain_more.yaml
spec $((PROBLEMS + MORE)) "$shard" > sharded_more.yaml
# Load the inputs once per cache so only `verify` is timed.
for c in plain sharded; do TW_CACHE_DIR="$WORK/$c" "$TW" run plain.yaml --no-progress --to subset >/dev/null 2>&1; done
TW_CACHE_DIR="$WORK/plain" "$TW" run plain_more.yaml --no-progress --to subset >/dev/null 2>&1
TW_CACHE_DIR="$WORK/sharded" "$TW" run plain_more.yaml --no-progress --to subset >/dev/null 2>&1

rows=$(TW_CACHE_DIR="$WORK/plain" "$TW" export plain.yaml subset.rows --format jsonl | wc -l)
plain=$(secs plain.yaml "$WORK/plain")
sharded=$(secs sharded.yaml "$WORK/sharded")
grep "shards " "$WORK/log" >&2 || true
plain_more=$(secs plain_more.yaml "$WORK/plain")
sharded_more=$(secs sharded_more.yaml "$WORK/sharded")
grep "shards " "$WORK/log" >&2 || true
same=$(cmp -s <(TW_CACHE_DIR="$WORK/plain" "$TW" export plain_more.yaml verify.summary --format jsonl) \
              <(TW_CACHE_DIR="$WORK/sharded" "$TW" export sharded_more.yaml verify.summary --format jsonl) && echo yes || echo NO)

echo "execute on $PROBLEMS HumanEval problems' CodeGen samples ($rows samples), 1 stage at a time:"
echo "  unsharded:                    ${plain} s"
echo "  shards of $ROWS:                ${sharded} s   (ratio sharded/unsharded $(echo "scale=2; $sharded / $plain" | bc))"
echo "after adding $MORE problems:"
echo "  unsharded reruns everything:  ${plain_more} s"
echo "  sharded reruns new shards:    ${sharded_more} s   (ratio $(echo "scale=2; $sharded_more / $plain_more" | bc))"
echo "  sharded output equals unsharded: $same"

if sinfo -h -o '%T' 2>/dev/null | grep -q .; then
  cluster=$(secs sharded_more.yaml "$WORK/slurm" "--executor slurm --poll 0.5")
  same=$(cmp -s <(TW_CACHE_DIR="$WORK/slurm" "$TW" export sharded_more.yaml verify.summary --format parquet -o "$WORK/a.parquet" >/dev/null; cat "$WORK/a.parquet") \
                <(TW_CACHE_DIR="$WORK/sharded" "$TW" export sharded_more.yaml verify.summary --format parquet -o "$WORK/b.parquet" >/dev/null; cat "$WORK/b.parquet") && echo yes || echo NO)
  echo "through Slurm (cold, every stage a job, $(sinfo -h -o '%c') CPUs):  ${cluster} s; artifact byte-identical to local: $same"
fi
