#!/usr/bin/env bash
# Engine benchmark (not a timed test): `tw plan` on a generated 1,000-stage
# matrix spec, and a no-op `tw run` of a small spec, side by side in one run.
#
#   bench/engine.sh            # builds a release tw without polars, runs, prints medians
#
# Uses only kinds that need no cargo feature (`load`, `render`) so the release
# build stays a few minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
cargo build --release --no-default-features --bin tw >&2
TW="$ROOT/target/release/tw"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
export TW_CACHE_DIR="$WORK/cache"

python3 - <<'PY'
import json
with open("rows.jsonl", "w") as f:
    for i in range(50):
        f.write(json.dumps({"id": i, "text": f"row {i}"}) + "\n")
open("t.j2", "w").write("{{ id }}: {{ text }} / {{ vars.a }} {{ vars.b }}\n")
a = list(range(10)); b = list(range(100))
with open("big.yaml", "w") as f:
    f.write("experiment: big\nmatrix:\n")
    f.write(f"  a: {json.dumps(a)}\n  b: {json.dumps(b)}\n")
    f.write("stages:\n  rows: { kind: load, params: { path: rows.jsonl } }\n")
    f.write("  cell:\n    kind: render\n    inputs: { rows: rows.rows }\n")
    f.write("    params: { template: t.j2, vars: { a: \"${a}\", b: \"${b}\" } }\n")
with open("small.yaml", "w") as f:
    f.write("experiment: small\nstages:\n  rows: { kind: load, params: { path: rows.jsonl } }\n")
    for i in range(5):
        f.write(f"  r{i}: {{ kind: render, inputs: {{ rows: rows.rows }}, params: {{ template: t.j2, vars: {{ a: {i}, b: 0 }} }} }}\n")
PY

"$TW" run small.yaml --no-progress 2>/dev/null
n=$("$TW" plan big.yaml --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["summary"]["total"])')

median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
time_ms() { # command... -> milliseconds of wall time
  local s e; s=$(date +%s%N); "$@" >/dev/null 2>&1; e=$(date +%s%N); echo $(( (e - s) / 1000000 ));
}
REPS=${REPS:-7}
plan_times=(); noop_times=()
for _ in $(seq "$REPS"); do
  plan_times+=("$(time_ms "$TW" plan big.yaml)")
  noop_times+=("$(time_ms "$TW" run small.yaml --no-progress)")
done
plan_med=$(printf '%s\n' "${plan_times[@]}" | median)
noop_med=$(printf '%s\n' "${noop_times[@]}" | median)
echo "tw plan, generated matrix spec ($n stage instances): median ${plan_med} ms over $REPS runs [${plan_times[*]}]"
echo "tw run, no-op on a 6-stage spec:                    median ${noop_med} ms over $REPS runs [${noop_times[*]}]"
