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
PARTS=${PARTS:-abc}
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
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; rm -rf "$work"; }
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

spec() { # file n concurrency with_seq
  local n=$1 c=$2 seq=$3
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
      model: { backend: openai, base_url: "$url", name: load, concurrency: $c, retries: 2 }
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

"$python" - "$measures" "$completions" $(( (256 * 20 / 164 + 1) * 164 )) <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
n, nb = int(sys.argv[2]), int(sys.argv[3])
stage = {(r["label"], r["stage"]): r["stage_s"] for r in rows if "stage" in r}
for r in rows:
    if "stage" in r:
        continue
    label = r.get("label", "")
    if label.startswith(("tw-gen", "tw-replay", "tw-latency")):
        done = nb if "latency" in label else n
        gen_s = stage.get((label, "samples"), r["wall_s"])
        r.update(completions=done, generate_s=gen_s, rate_per_s=round(done / gen_s, 1),
                 cpu_ms_per_completion=round(1000 * r["cpu_s"] / done, 3))
    if label.startswith("tw-seq"):
        r["sequential_s"] = stage.get((label, "debug"))
    print(json.dumps(r))
PY
