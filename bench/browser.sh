#!/usr/bin/env bash
# Benchmark: the study browser on the largest study here, the replay of 16,400 CodeGen-16B
# HumanEval samples (specs/replay_codegen.yaml; about 4 minutes cold, then cached): page
# weight and open times in headless Chromium (scripts/setup-browser.sh).
#
#   bench/browser.sh [--runs 5]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tw=${TW_BIN:-$root/target/release/tw}
[ -x "$tw" ] || tw=$root/target/debug/tw
[ -x "$tw" ] || { echo "bench/browser.sh: build tw first (cargo build --release)" >&2; exit 1; }
cd "$root"
start=$(date +%s.%N)
"$tw" report specs/replay_codegen.yaml >/dev/null
echo "tw report specs/replay_codegen.yaml: $(echo "$(date +%s.%N) - $start" | bc) s (cached stages are not rerun)"
python3 bench/browser_open.py reports/report "$@"
