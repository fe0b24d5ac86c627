#!/usr/bin/env bash
# The LLM path at paper scale (a benchmark, not a timed test), side by side in
# one run on one machine:
#   a. `generate` (N completions) and `sequential_scaling` through tw against a
#      load server that answers at once (stages/examples/load_server.rs: a load
#      generator only; functional tests use the real llama-server), at each
#      concurrency in CONC; the same N through the `openai` package's async
#      client at the same concurrency (bench/llm_load_client.py); then tw's
#      replay of those N from the ledger.
#   b. a 1-second-latency endpoint at 256 in flight: is tw the bottleneck?
#   c. the ledger at LEDGER_N completions: this tw (JSONL segments) against the
#      last tw with one file per completion (BASELINE, the commit before the
#      segments, built once into ~/.cache/tw-bench-v1): fill time, replay time
#      (from a cold page cache where this user may drop it, as on a fresh
#      node), peak memory, files, bytes.
#   d. a fleet (one vLLM server per GPU): FLEET servers at 1-second latency,
#      FLEET_CONC in flight each, FLEET_N completions, twice side by side:
#      every server healthy, then with faults (the second server answers 503
#      to every 10th request; the fifth is killed with SIGKILL KILL_AT seconds
#      in, its requests in flight dropped, and started again on its port at
#      RESTART_AT): the rate against the fleet's ceiling, what each endpoint
#      served and failed, and whether every completion arrived.
#
#   bench/llm_load.sh                                    # N=100000, CONC="64 256", LEDGER_N=500000
#   N=20000 LEDGER_N=50000 PARTS=ac bench/llm_load.sh    # smaller, some parts
#
# Needs HumanEval (data/benchmarks via scripts/link-data.sh, or TW_BENCHMARKS)
# and PyPI for the openai client (installed once into the cache).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
N=${N:-100000}
CONC=${CONC:-"64 256"}
LEDGER_N=${LEDGER_N:-500000}
PARTS=${PARTS:-abcd}
FLEET=${FLEET:-8}
FLEET_CONC=${FLEET_CONC:-32}
FLEET_N=${FLEET_N:-10000}
KILL_AT=${KILL_AT:-10}
RESTART_AT=${RESTART_AT:-25}
SEQ_N=${SEQ_N:-8}
SEQ_ROUNDS=${SEQ_ROUNDS:-2}
baseline_commit=${BASELINE:-0879f25}
data=${TW_BENCHMARKS:-$root/data/benchmarks}
[ -f "$data/HumanEval.jsonl.gz" ] || data=$root/../shared/data/benchmarks
[ -f "$data/HumanEval.jsonl.gz" ] || { echo "no HumanEval.jsonl.gz: run scripts/link-data.sh or set TW_BENCHMARKS" >&2; exit 2; }
python=${TW_PYTHON:-python3}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/tw-bench-v1
mkdir -p "$cache"
target=${CARGO_TARGET_DIR:-$root/target}

(cd "$root" && cargo build --release --locked --no-default-features --bin tw >&2 &&
  cargo build --release --locked -p tw-stages --example load_server >&2)
tw=$target/release/tw
server_bin=$target/release/examples/load_server

venv=$cache/openai-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import openai' 2>/dev/null; then
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install --quiet 'openai>=1.40,<2'
fi

. "$root/bench/baseline.sh"
old=
if [[ $PARTS == *c* ]]; then old=$(baseline_tw "$baseline_commit"); fi

work=$(mktemp -d)
server_pid=
fleet_pids=()
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null
  for pid in "${fleet_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
measures=$work/measures.jsonl
: > "$measures"

start_server() { # delay_ms -> sets url, server_pid
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
  "$server_bin" --port 0 --delay-ms "$1" > "$work/server.out" &
  server_pid=$!
  for _ in $(seq 100); do [ -s "$work/server.out" ] && break; sleep 0.05; done
  url=$(head -1 "$work/server.out")
}

spec() { # n concurrency with_seq [model_line]
  local n=$1 c=$2 seq=$3
  local model=${4:-"{ backend: openai, base_url: \"$url\", name: load, concurrency: $c, retries: 2 }"}
  cat <<EOF
experiment: llm_load
stages:
  humaneval:
    kind: load_benchmark
    params: { benchmark: humaneval, path: "$data/HumanEval.jsonl.gz" }
  samples:
    kind: generate
    inputs: { problems: humaneval.problems }
    params:
      model: $model
      template: "$root/templates/prompts/nl2code.j2"
      strategy: sample
      n: $n
      temperature: 0.8
      sampling: { max_tokens: 256 }
EOF
  if [ "$seq" = 1 ]; then cat <<EOF
  debug:
    kind: sequential_scaling
    inputs: { problems: humaneval.problems, tests: humaneval.tests }
    params:
      model: { backend: openai, base_url: "$url", name: load, concurrency: $c, retries: 2 }
      first_template: "$root/templates/prompts/nl2code.j2"
      debug_template: "$root/templates/prompts/self_debug.j2"
      representation: "$root/templates/traces/next.j2"
      n: $SEQ_N
      rounds: $SEQ_ROUNDS
      temperature: 0.8
      sampling: { max_tokens: 256 }
EOF
  fi
}

# One tw run: wall / CPU / peak memory into measures, per-stage times printed.
run_tw() { # label bin dir
  local label=$1 bin=$2 dir=$3
  (cd "$dir" && TW_CACHE_DIR=$dir/cache "$python" "$root/bench/peak_rss.py" "$label" "$measures" -- \
     "$bin" run spec.yaml --no-progress 2> "$dir/$label.log" >/dev/null) || { cat "$dir/$label.log" >&2; exit 1; }
  grep -E '^\s+ran ' "$dir/$label.log" | awk -v l="$label" \
    '{ s = $4; sub(/s$/, "", s); printf "{\"label\": \"%s\", \"stage\": \"%s\", \"kind\": \"%s\", \"stage_s\": %s}\n", l, $2, $3, s }' >> "$measures"
}

per_problem=$(( (N + 163) / 164 ))
completions=$(( per_problem * 164 ))

if [[ $PARTS == *a* ]]; then
  start_server 0
  for c in $CONC; do
    d=$work/a$c; mkdir -p "$d"
    # generate alone: rate, CPU per completion, peak memory.
    spec "$per_problem" "$c" 0 > "$d/spec.yaml"
    run_tw "tw-gen-c$c" "$tw" "$d"
    # The replay: every stage result forgotten, the ledger kept.
    find "$d/cache" -mindepth 1 -maxdepth 1 ! -name ledger -exec rm -rf {} +
    run_tw "tw-replay-c$c" "$tw" "$d"
    # sequential_scaling added: only it runs (generate is cached).
    spec "$per_problem" "$c" 1 > "$d/spec.yaml"
    run_tw "tw-seq-c$c" "$tw" "$d"
    "$venv/bin/python" "$root/bench/llm_load_client.py" "$url" "$completions" "$c" > "$d/python.json"
    cat "$d/python.json" >> "$measures"
    rm -rf "$d"
  done
fi

if [[ $PARTS == *b* ]]; then
  start_server 1000
  nb=$(( 256 * 20 ))
  d=$work/b; mkdir -p "$d"
  spec $(( nb / 164 + 1 )) 256 0 > "$d/spec.yaml"
  run_tw "tw-latency1s-c256" "$tw" "$d"
  # (the Python client's line follows, labelled by its concurrency)
  "$venv/bin/python" "$root/bench/llm_load_client.py" "$url" "$(( (nb / 164 + 1) * 164 ))" 256 > "$d/python.json"
  cat "$d/python.json" >> "$measures"
  echo "  1-second endpoint, 256 in flight: the ceiling is 256 completions/s"
fi

if [[ $PARTS == *c* ]]; then
  start_server 0
  lp=$(( (LEDGER_N + 163) / 164 ))
  for which in new old; do
    bin=$tw; [ $which = old ] && bin=$old
    d=$work/c$which; mkdir -p "$d"
    spec "$lp" 256 0 > "$d/spec.yaml"
    run_tw "ledger-fill-$which" "$bin" "$d"
    find "$d/cache" -mindepth 1 -maxdepth 1 ! -name ledger -exec rm -rf {} +
    sync
    cold=false
    if (echo 3 > /proc/sys/vm/drop_caches) 2>/dev/null; then cold=true; fi
    run_tw "ledger-replay-$which" "$bin" "$d"
    files=$(find "$d/cache/ledger" -type f | wc -l)
    bytes=$(du -sb "$d/cache/ledger" | cut -f1)
    echo "{\"label\": \"ledger-$which\", \"completions\": $(( lp * 164 )), \"files\": $files, \"bytes\": $bytes, \"replay_cold_cache\": $cold}" >> "$measures"
    rm -rf "$d"
  done
fi

if [[ $PARTS == *d* ]]; then
  start_fleet_server() { # index port extra-flags...
    local i=$1 port=$2
    shift 2
    "$server_bin" --port "$port" --delay-ms 1000 "$@" > "$work/fleet$i.out" &
    fleet_pids[i]=$!
    for _ in $(seq 100); do [ -s "$work/fleet$i.out" ] && break; sleep 0.05; done
    fleet_urls[i]=$(head -1 "$work/fleet$i.out")
  }
  fleet_per_problem=$(( (FLEET_N + 163) / 164 ))
  for run in clean faults; do
    fleet_urls=()
    for i in $(seq 0 $(( FLEET - 1 ))); do
      if [ $run = faults ] && [ "$i" = 1 ]; then
        start_fleet_server "$i" 0 --error-every 10 --error-status 503
      else
        start_fleet_server "$i" 0
      fi
    done
    items=$(for u in "${fleet_urls[@]}"; do printf '{ url: "%s" }, ' "$u"; done)
    d=$work/d$run; mkdir -p "$d"
    spec "$fleet_per_problem" "$FLEET_CONC" 0 \
      "{ backend: openai, base_url: [ ${items%, } ], name: load, concurrency: $FLEET_CONC }" > "$d/spec.yaml"
    if [ $run = faults ] && [ "$FLEET" -ge 5 ]; then
      victim_port=${fleet_urls[4]##*:}
      victim_port=${victim_port%%/*}
      (sleep "$KILL_AT"; kill -9 "${fleet_pids[4]}"
       sleep $(( RESTART_AT - KILL_AT ))
       "$server_bin" --port "$victim_port" --delay-ms 1000 > "$work/fleet4.again" &
       echo $! > "$work/fleet4.pid"; wait) &
      chaos=$!
    fi
    run_tw "tw-fleet-$run" "$tw" "$d"
    if [ $run = faults ] && [ "$FLEET" -ge 5 ]; then
      # The run may end before the restart: wait for it, then stop the server.
      while [ ! -s "$work/fleet4.pid" ] && kill -0 "$chaos" 2>/dev/null; do sleep 0.2; done
      kill "$(cat "$work/fleet4.pid" 2>/dev/null)" 2>/dev/null || true
      wait "$chaos" 2>/dev/null || true
    fi
    # What each endpoint served and failed (the generate stage's manifest), and
    # the rows of its table: the run fails if any completion is missing.
    "$python" - "$d/cache" "tw-fleet-$run" "$(( fleet_per_problem * 164 ))" >> "$measures" <<'PY'
import glob, json, sys
cache, label, asked = sys.argv[1], sys.argv[2], int(sys.argv[3])
for path in glob.glob(cache + "/v1/obj/**/manifest.json", recursive=True):
    m = json.load(open(path))
    ends = m["notes"].get("llm_endpoints")
    if ends:
        rows = sum(o["rows"] for o in m["outputs"].values())
        print(json.dumps({"label": label + "-endpoints", "asked": asked, "table_rows": rows,
                          "served": [e["served"] for e in ends.values()],
                          "failed": [e["failed"] for e in ends.values()]}))
PY
    for pid in "${fleet_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait "${fleet_pids[@]}" 2>/dev/null || true
    fleet_pids=()
    rm -rf "$d"
  done
  echo "  fleet: $FLEET servers x $FLEET_CONC in flight at 1 s: the ceiling is $(( FLEET * FLEET_CONC )) completions/s"
fi

"$python" - "$measures" "$completions" $(( (256 * 20 / 164 + 1) * 164 )) $(( (FLEET_N + 163) / 164 * 164 )) <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
n, nb, nf = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
stage = {(r["label"], r["stage"]): r["stage_s"] for r in rows if "stage" in r}
for r in rows:
    if "stage" in r:
        continue
    label = r.get("label", "")
    if label.startswith(("tw-gen", "tw-replay", "tw-latency")) or label in ("tw-fleet-clean", "tw-fleet-faults"):
        done = nb if "latency" in label else nf if "fleet" in label else n
        gen_s = stage.get((label, "samples"), r["wall_s"])
        r.update(completions=done, generate_s=gen_s, rate_per_s=round(done / gen_s, 1),
                 cpu_ms_per_completion=round(1000 * r["cpu_s"] / done, 3))
    if label.startswith("tw-seq"):
        r["sequential_s"] = stage.get((label, "debug"))
    print(json.dumps(r))
PY
