#!/usr/bin/env bash
# Benchmark (b): tw's tracer vs untraced and PySnooper 1.2.3 (see tracer_bench.py).
# With every local, it counts tw reading the trace too (the locals are sent as
# changes and rebuilt in Rust): the `trace_expand` example, built here.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python=${TW_PYTHON:-/usr/bin/python3}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/tw-bench-v1
if [ ! -d "$cache/pylib/pysnooper" ]; then
  "$python" -m pip install --quiet --target "$cache/pylib" pysnooper==1.2.3
fi
target=${CARGO_TARGET_DIR:-$root/target}
(cd "$root" && cargo build --release --locked -p tw-stages --example trace_expand >&2)
mkdir -p "$root/target"
PYTHONPATH="$cache/pylib" "$python" "$root/bench/tracer_bench.py" \
  --expand "$target/release/examples/trace_expand" "$@"
