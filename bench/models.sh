#!/usr/bin/env bash
# Side-by-side throughput of tw's model runtime and HF Transformers + PEFT on the
# same machine, architecture, batch and dtype (bf16 on CUDA, f32 on CPU):
# LoRA and full fine-tuning tokens/s and MFU, then greedy generation tokens/s.
#
#   bench/models.sh [PRESET] [BATCH] [SEQ] [STEPS]     # default qwen2.5-0.5b 8 512 10
#
# Needs the tw example built with `--features torch --release`, and a Python with
# torch, transformers and peft: TW_TORCH_PYTHON (scripts/setup-torch.sh --with-hf),
# or PYTHON on a GPU machine that has them. Extra flags for both go in BENCH_ARGS
# (e.g. BENCH_ARGS="--device cpu --threads 2 --gen-batch 2 --gen-tokens 16").
set -euo pipefail
cd "$(dirname "$0")/.."
preset="${1:-qwen2.5-0.5b}"; batch="${2:-8}"; seq="${3:-512}"; steps="${4:-10}"
python="${PYTHON:-${TW_TORCH_PYTHON:-python3}}"
bin="${TW_BENCH_BIN:-target/release/examples/model_bench}"
[ -x "$bin" ] || { echo "build first: cargo build --release --features torch --example model_bench" >&2; exit 2; }
out="$(mktemp)"
common=(--preset "$preset" --batch "$batch" --seq "$seq" --steps "$steps")
# shellcheck disable=SC2086
for method in lora full; do
  "$bin" "${common[@]}" --method "$method" --skip generate ${BENCH_ARGS:-} | tee -a "$out"
  "$python" bench/models_hf.py "${common[@]}" --method "$method" --skip generate ${BENCH_ARGS:-} | tee -a "$out"
done
# shellcheck disable=SC2086
"$bin" "${common[@]}" --skip train ${BENCH_ARGS:-} | tee -a "$out"
# shellcheck disable=SC2086
"$python" bench/models_hf.py "${common[@]}" --skip train ${BENCH_ARGS:-} | tee -a "$out"
"$python" - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
def pick(impl, phase, method=None):
    for r in rows:
        if r["impl"] == impl and r["phase"] == phase and (method is None or r.get("method") == method):
            return r
print()
print("| measurement | tw | HF | tw / HF |")
print("|---|---|---|---|")
for method in ("lora", "full"):
    t, h = pick("tw", "train", method), pick("hf", "train", method)
    if t and h:
        mfu = lambda r: f", MFU {100 * r['mfu']:.1f}%" if r.get("mfu") else ""
        print(f"| train {method} tokens/s | {t['tokens_per_s']:.0f}{mfu(t)} | {h['tokens_per_s']:.0f}{mfu(h)} | {t['tokens_per_s'] / h['tokens_per_s']:.2f} |")
t, h = pick("tw", "generate"), pick("hf", "generate")
if t and h:
    print(f"| generate tokens/s | {t['tokens_per_s']:.0f} | {h['tokens_per_s']:.0f} | {t['tokens_per_s'] / h['tokens_per_s']:.2f} |")
PY
rm -f "$out"
