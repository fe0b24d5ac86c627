#!/usr/bin/env bash
# Benchmark: `tw score` against EvalPlus 0.3.1 on HumanEval+ (base and plus),
# side by side in one run on the same cores: PER_TASK CodeGen-16B samples per
# problem (default 10: 1,640 samples), both cold (EvalPlus's ground-truth
# cache and tw's cache removed first), `--parallel 2` / `-j 2`.
#
# Both use the same time limits, max(floor, 4 x the canonical solution's
# time per input): first at EvalPlus 0.3.1's floor, 1 s (its default; tw
# takes it with --timeout 1), then at 4 s (tw's default, EvalPlus's later
# default; EvalPlus takes it with --min_time_limit 4). For each it checks that
# every sample's base and plus verdicts agree, prints pass@1 and pass@10 of
# both, wall time and peak memory (its own, and its whole process tree), and
# the ratio EvalPlus / tw.
#
#   bash bench/evalplus.sh                 # both floors
#   FLOORS=1 bash bench/evalplus.sh        # EvalPlus 0.3.1's default only
#
# Needs: the benchmarks dir (TW_BENCHMARKS, default ../shared/data/benchmarks),
# pip (EvalPlus goes into a venv in ~/.cache/tw-bench-v1), a release tw
# (TW_BIN, default target/release/tw).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
data=${TW_BENCHMARKS:-$root/../shared/data/benchmarks}
per_task=${PER_TASK:-10}
floors=${FLOORS:-1 4}
jobs=${JOBS:-2}
python=${TW_PYTHON:-/usr/bin/python3}
tw=${TW_BIN:-$root/target/release/tw}
[ -x "$tw" ] || { echo "build tw first (cargo build --release), or set TW_BIN" >&2; exit 2; }
cache=${XDG_CACHE_HOME:-$HOME/.cache}/tw-bench-v1
venv=$cache/evalplus-0.3.1
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
  "$venv/bin/pip" install --quiet evalplus==0.3.1
fi

work=$(mktemp -d)
if [ "${KEEP:-0}" = 1 ]; then trap 'echo "bench: kept $work" >&2' EXIT; else trap 'rm -rf "$work"' EXIT; fi
measure() { local label=$1; shift; "$python" "$root/bench/peak_rss.py" "$label" "$work/measures.jsonl" "$@"; }

"$python" "$root/bench/match_prompts.py" "$data/HumanEval.jsonl.gz" \
  "$data/humaneval_codegen16b_100samples.jsonl" "$work/all.jsonl" >&2
"$python" - "$work" "$per_task" <<'PY'
import collections, json, sys
work, per = sys.argv[1], int(sys.argv[2])
seen = collections.Counter()
with open(work + "/all.jsonl") as f, open(work + "/samples.jsonl", "w") as out:
    for line in f:
        row = json.loads(line)
        seen[row["task_id"]] += 1
        if seen[row["task_id"]] <= per:
            out.write(line)
PY
gunzip -c "$data/HumanEvalPlus.jsonl.gz" > "$work/HumanEvalPlus.jsonl"

for floor in $floors; do
  mkdir -p "$work/ep-$floor" "$work/tw-$floor"
  cp "$work/samples.jsonl" "$work/ep-$floor/samples.jsonl"
  # EvalPlus keeps ground truth under XDG_CACHE_HOME/evalplus: a fresh one is cold.
  (cd "$work/ep-$floor" && XDG_CACHE_HOME="$work/ep-$floor/cache" \
    HUMANEVAL_OVERRIDE_PATH="$work/HumanEvalPlus.jsonl" \
    measure "EvalPlus 0.3.1, floor ${floor}s" -- "$venv/bin/python" -m evalplus.evaluate humaneval \
      --samples samples.jsonl --parallel "$jobs" --min_time_limit "$floor" --i_just_wanna_run \
      > "$work/ep-$floor/out.txt" 2>&1)
  (cd "$work/tw-$floor" && measure "tw score, floor ${floor}s" -- "$tw" score --benchmark humaneval-plus \
    --problems "$data/HumanEvalPlus.jsonl.gz" --samples "$work/samples.jsonl" --k 1,10 -j "$jobs" \
    --timeout "$floor" --cache-dir "$work/tw-$floor/cache" --details "$work/tw-$floor/details.jsonl" \
    --json > "$work/tw-$floor/report.json")
done

"$python" - "$work" "$floors" <<'PY'
import json, sys
work, floors = sys.argv[1], sys.argv[2].split()
m = {json.loads(l)["label"]: json.loads(l) for l in open(work + "/measures.jsonl")}
for floor in floors:
    ep = json.load(open("%s/ep-%s/samples_eval_results.json" % (work, floor)))["eval"]
    tw = {(r["task_id"], r["index"]): r for r in map(json.loads, open("%s/tw-%s/details.jsonl" % (work, floor)))}
    differ = []
    for task, rows in ep.items():
        for i, r in enumerate(rows):
            base = r["base_status"] == "pass"
            plus = base and r["plus_status"] == "pass"
            t = tw[(task, i)]
            if (base, plus) != (t["base_pass"], t["plus_pass"]):
                differ.append("%s #%d: EvalPlus %s/%s, tw %s" % (task, i, r["base_status"], r["plus_status"], t["detail"]))
    report = json.load(open("%s/tw-%s/report.json" % (work, floor)))
    tw_scores = {(p["suite"], p["k"]): p["score"] for p in report["pass_at_k"]}
    ep_lines = [l for l in open("%s/ep-%s/out.txt" % (work, floor)) if l.startswith("pass@")]
    print("floor %ss: %d samples, verdicts that differ: %d" % (floor, sum(map(len, ep.values())), len(differ)))
    for d in differ:
        print("  " + d)
    print("  EvalPlus pass@k (base 1, 10; plus 1, 10): %s" % " ".join(l.split()[1] for l in ep_lines))
    print("  tw       pass@k (base 1, 10; plus 1, 10): %s" % " ".join(
        "%.3f" % tw_scores[k] for k in [("base", 1), ("base", 10), ("plus", 1), ("plus", 10)]))
    e, t = m["EvalPlus 0.3.1, floor %ss" % floor], m["tw score, floor %ss" % floor]
    for label, r in (("EvalPlus", e), ("tw", t)):
        print("  %-8s wall %7.2f s  peak RSS %7.1f MB (whole process tree %7.1f MB)  exit %d"
              % (label, r["wall_s"], r["rss_mb"], r["tree_mb"], r["status"]))
    print("  EvalPlus / tw: %.2fx" % (e["wall_s"] / t["wall_s"]))
PY
