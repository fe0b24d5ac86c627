#!/usr/bin/env bash
# Start llama.cpp's llama-server serving SmolLM2 on 127.0.0.1 in the background, for the
# test-time-scaling specs (specs/tts_scaling.yaml). Builds or reuses both (cached under
# ~/.cache/tw/v1). Prints `export` lines:
#
#   eval "$(scripts/serve-llama.sh)"          # port 8080; or scripts/serve-llama.sh PORT
#   tw run specs/tts_scaling.yaml
#   kill "$TW_LLAMA_PID"
#
# OPENAI_BASE_URL is what a spec's `model: {backend: openai}` uses when it names no
# `base_url`. The server log is cache/llama-server.log.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
checkout="$(cd "$here/.." && pwd)"
port="${1:-8080}"
# `out=$(...)` keeps a set-up script's failure under set -e; `eval "$(...)"` would hide it.
models_env="$("$here/setup-models.sh")"
eval "$models_env"
server_env="$("$here/setup-llama-server.sh")"
eval "$server_env"
mkdir -p "$checkout/cache"
log="$checkout/cache/llama-server.log"
threads="$(nproc 2>/dev/null || echo 2)"
# -np 4 parallel slots over an 8k context: 2k tokens per request, what the prompts need.
nohup "$TW_LLAMA_SERVER" -m "$TW_SMOLLM2_GGUF" --host 127.0.0.1 --port "$port" \
  -c 8192 -np 4 -t "$threads" >"$log" 2>&1 &
pid=$!
for _ in $(seq 1 300); do
  if python3 - "$port" <<'PY' 2>/dev/null; then
import sys, urllib.request
urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health", timeout=1).read()
PY
    echo "serve-llama.sh: llama-server (pid $pid) is up on port $port; log: $log" >&2
    echo "export OPENAI_BASE_URL=http://127.0.0.1:$port/v1"
    echo "export TW_LLAMA_PID=$pid"
    exit 0
  fi
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "serve-llama.sh: llama-server exited; last lines of $log:" >&2
    tail -n 20 "$log" >&2
    exit 1
  fi
  sleep 0.2
done
echo "serve-llama.sh: llama-server did not become healthy on port $port within 60 s; see $log" >&2
kill "$pid" 2>/dev/null || true
exit 1
