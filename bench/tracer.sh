#!/usr/bin/env bash
# Benchmark (b): tw's tracer vs untraced and PySnooper 1.2.3 (see tracer_bench.py).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python=${TW_PYTHON:-/usr/bin/python3}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/tw-bench-v1
if [ ! -d "$cache/pylib/pysnooper" ]; then
  "$python" -m pip install --quiet --target "$cache/pylib" pysnooper==1.2.3
fi
mkdir -p "$root/target"
PYTHONPATH="$cache/pylib" "$python" "$root/bench/tracer_bench.py" "$@"
