#!/usr/bin/env bash
# Install libtorch (PyTorch 2.11.0's PyPI wheel, matching tch 0.24) into a cached
# environment, link it into the checkout as `.libtorch` (where `.cargo/config.toml`
# points the build of the default `torch` feature), and print its variables:
#
#   eval "$(scripts/setup-torch.sh)"            # LIBTORCH, LIBTORCH_CXX11_ABI, TW_TORCH_PYTHON
#   eval "$(scripts/setup-torch.sh --with-hf)"  # also transformers + peft, for the parity tests
#
# After it, a plain `cargo build` finds libtorch through the link, with no variable set.
# The PyPI wheel is a CUDA build. The Rust binary only loads `libtorch_cpu.so`, which
# needs just two small NVIDIA runtime wheels (cudart, cupti): 0.5 GB instead of 2.7 GB.
# Python's `import torch` loads libtorch_cuda and with it cuDNN, cuBLAS, NCCL..., so
# `--with-hf` installs the wheel's full dependency set. On a GPU machine that already
# has torch 2.11.0, point LIBTORCH at that installation instead.
#
# The environment lives under ${TW_CACHE_HOME:-$HOME/.cache/tw}/v1/torch-2.11.0 and is
# reused; delete it to rebuild. Progress goes to stderr; stdout carries only `export` lines.
set -euo pipefail

TORCH_VERSION=2.11.0
CUDART_VERSION=13.0.96
CUPTI_VERSION=13.0.85
root="${TW_CACHE_HOME:-$HOME/.cache/tw}/v1/torch-$TORCH_VERSION"
env_dir="$root/env"
variant=cpu
for arg in "$@"; do
  case "$arg" in
    --with-hf) variant=hf ;;
    *) echo "setup-torch.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done
. "$(dirname "$0")/python.sh"

have="$(cat "$root/installed" 2>/dev/null || true)"
# An `hf` environment serves both uses; a `cpu` one is rebuilt when `hf` is asked for.
if [ "$have" != "$variant" ] && [ "$have" != hf ]; then
  echo "setup-torch.sh: installing torch $TORCH_VERSION ($variant) into $env_dir" >&2
  mkdir -p "$root"
  rm -f "$root/installed"
  make_env "$env_dir"
  # Pure-Python dependencies of `import torch`, and numpy for the reference scripts.
  pure=(filelock "typing-extensions>=4.10" "sympy>=1.13.3" "networkx>=2.5.1" jinja2 "fsspec>=0.8.5" "setuptools<82" numpy)
  if [ "$variant" = hf ]; then
    pip_install "$env_dir" "torch==$TORCH_VERSION" "${pure[@]}"
    # --no-deps, then their dependencies by name: with `pip --target`, pip cannot see the
    # torch above and would install a second one.
    pip_install "$env_dir" --no-deps "transformers==4.57.1" "peft==0.17.1" "accelerate==1.10.1"
    pip_install "$env_dir" "huggingface-hub>=0.34,<1.0" "tokenizers>=0.22,<=0.23" "safetensors>=0.4.3" \
      packaging pyyaml regex requests tqdm psutil
  else
    pip_install "$env_dir" --no-deps \
      "torch==$TORCH_VERSION" "nvidia-cuda-runtime==$CUDART_VERSION" "nvidia-cuda-cupti==$CUPTI_VERSION"
    pip_install "$env_dir" "${pure[@]}"
  fi
  echo "$variant" >"$root/installed"
fi

# Found by path, not by `import torch`, which a `cpu` environment cannot do.
torch_dir="$(find "$env_dir" -maxdepth 5 -type d -name torch -path '*-packages/torch' -o -maxdepth 5 -type d -path '*/site/torch' | head -n 1)"
[ -f "$torch_dir/lib/libtorch_cpu.so" ] || { echo "setup-torch.sh: no libtorch in $env_dir; delete $root and retry" >&2; exit 1; }
# The build's default place for libtorch (.cargo/config.toml); git ignores the link.
checkout="$(cd "$(dirname "$0")/.." && pwd)"
ln -sfn "$torch_dir" "$checkout/.libtorch"
echo "export LIBTORCH=$torch_dir"
echo "export LIBTORCH_CXX11_ABI=1"
echo "export TW_TORCH_PYTHON=$env_dir/bin/python"
