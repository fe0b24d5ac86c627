#!/usr/bin/env bash
# `execute` at scale (a benchmark, not a timed test): one problem with TESTS
# tests and candidates enough for SIZES (candidate, test) pairs, run by this
# tw and by BASELINE (the commit before `execute` streamed its rows, built
# once into ~/.cache/tw-bench-v1), side by side: wall, CPU, peak memory of
# tw itself and of its whole process tree, and pairs per second per core.
# Memory flat in the number of pairs is the goal; every output is compared.
#
#   bench/execute_scale.sh                              # SIZES="50000 100000 200000"
#   SIZES="20000 40000" bench/execute_scale.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
SIZES=${SIZES:-"50000 100000 200000"}
TESTS=${TESTS:-10}
baseline_commit=${BASELINE:-0879f25}
python=${TW_PYTHON:-python3}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/tw-bench-v1
mkdir -p "$cache"
target=${CARGO_TARGET_DIR:-$root/target}
(cd "$root" && cargo build --release --locked --no-default-features --bin tw >&2)
tw=$target/release/tw
. "$root/bench/baseline.sh"
old=$(baseline_tw "$baseline_commit")

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
measures=$work/measures.jsonl
: > "$measures"
cores=$(nproc)

for pairs in $SIZES; do
  n=$(( pairs / TESTS ))
  d=$work/p$pairs; mkdir -p "$d"
  "$python" - "$d" "$n" "$TESTS" <<'PY'
import json, sys
d, n, t = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with open(d + "/tests.jsonl", "w") as f:
    for i in range(t):
        f.write(json.dumps({"task_id": "P/0", "input": json.dumps([i, i + 1]), "expected": json.dumps(2 * i + 1)}) + "\n")
with open(d + "/candidates.jsonl", "w") as f:
    for i in range(n):
        # Right, wrong on one test, or crashing: three kinds of result rows.
        body = ["return a + b", "return a + b if a != 3 else 0", "return a + b + undefined"][i % 3]
        f.write(json.dumps({"candidate": f"c{i}", "task_id": "P/0", "entry_point": "add",
                            "program": f"def add(a, b):\n    # sample {i}\n    {body}\n"}) + "\n")
PY
  cat > "$d/spec.yaml" <<'EOF'
experiment: execute_scale
stages:
  candidates: { kind: load, params: { path: candidates.jsonl } }
  tests: { kind: load, params: { path: tests.jsonl } }
  verify:
    kind: execute
    inputs: { candidates: candidates.rows, tests: tests.rows }
    params: { candidate_id: candidate, timeout: 3 }
EOF
  for which in new old; do
    bin=$tw; [ $which = old ] && bin=$old
    rm -rf "$d/cache"
    (cd "$d" && TW_CACHE_DIR=$d/cache "$python" "$root/bench/peak_rss.py" "execute $pairs pairs $which" "$measures" -- \
       "$bin" run spec.yaml --no-progress 2> "$d/$which.log" >/dev/null) || { cat "$d/$which.log" >&2; exit 1; }
    (cd "$d" && TW_CACHE_DIR=$d/cache "$bin" export spec.yaml verify.results --format jsonl > "$d/$which.results.jsonl")
    stage_s=$(grep -E '^\s+ran +verify ' "$d/$which.log" | awk '{s=$4; sub(/s$/, "", s); print s}')
    echo "{\"label\": \"execute $pairs pairs $which\", \"stage_s\": $stage_s}" >> "$measures"
  done
  if cmp -s "$d/new.results.jsonl" "$d/old.results.jsonl"; then same=true; else same=false; fi
  echo "{\"label\": \"execute $pairs pairs\", \"results_identical\": $same, \"rows\": $(wc -l < "$d/new.results.jsonl")}" >> "$measures"
  rm -rf "$d"
done

"$python" - "$measures" "$cores" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
cores = int(sys.argv[2])
stage = {r["label"]: r["stage_s"] for r in rows if "stage_s" in r}
for r in rows:
    if "stage_s" in r:
        continue
    if "wall_s" in r:
        pairs = int(r["label"].split()[1])
        s = stage[r["label"]]
        r.update(execute_s=s, pairs_per_s_per_core=round(pairs / s / cores, 1))
    print(json.dumps(r))
PY
