#!/usr/bin/env bash
# Install LLaMA-Factory 0.9.4 into a cached environment for the `sft` stage's
# `backend: llamafactory`, and print the variables that point tw and its tests at it:
#
#   eval "$(scripts/setup-llamafactory.sh)"   # PATH (llamafactory-cli), TW_LLAMAFACTORY_CLI
#
# LLaMA-Factory 0.9.4 is the release whose pins (transformers 4.51-4.57.1, peft <= 0.17.1,
# accelerate <= 1.11) admit the torch 2.11.0 + transformers 4.57.1 + peft 0.17.1 + accelerate
# 1.10.1 environment of `scripts/setup-torch.sh --with-hf`, so that environment is reused
# (through a .pth file) instead of a second 3 GB torch. On top of it: LLaMA-Factory, trl,
# torchvision and torchaudio without their dependencies (LLaMA-Factory's gradio, modelscope,
# uvicorn... serve the web UI and the API, not `llamafactory-cli train`; pip names them
# as missing, which is expected), then the training path's own dependencies by name.
# That is a CPU or single-node install for tw's tests; on a GPU cluster install
# `pip install llamafactory==0.9.4 deepspeed` (DeepSpeed for ZeRO-3) as its README says.
#
# The environment lives under ${TW_CACHE_HOME:-$HOME/.cache/tw}/v1/llamafactory-0.9.4 and is
# reused; delete it to rebuild. Progress goes to stderr; stdout carries only `export` lines.
set -euo pipefail

LF_VERSION=0.9.4
here="$(cd "$(dirname "$0")" && pwd)"
root="${TW_CACHE_HOME:-$HOME/.cache/tw}/v1/llamafactory-$LF_VERSION"
env_dir="$root/env"
. "$here/python.sh"

# torch, transformers, peft, accelerate: the parity tests' environment.
# (A failure of setup-torch.sh fails this script: `out=$(...)` keeps its status under set -e.)
torch_env="$("$here/setup-torch.sh" --with-hf)"
torch_python="$(eval "$torch_env"; echo "$TW_TORCH_PYTHON")"
torch_site="$("$torch_python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
# A `pip --target` torch environment (no venv) keeps its packages in site/.
[ -d "$torch_site/torch" ] || torch_site="$(dirname "$(dirname "$torch_python")")/site"
[ -d "$torch_site/torch" ] || { echo "setup-llamafactory.sh: no torch in $torch_site" >&2; exit 1; }

if [ ! -f "$root/.ok" ] || [ "$(cat "$root/.ok")" != "$torch_site" ]; then
  echo "setup-llamafactory.sh: installing llamafactory==$LF_VERSION into $env_dir" >&2
  mkdir -p "$root"
  rm -f "$root/.ok"
  make_env "$env_dir"
  if [ -f "$env_dir/pyvenv.cfg" ]; then
    site="$("$env_dir/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    echo "$torch_site" >"$site/tw-torch-2.11.0.pth"
  else
    # make_env's wrapper: put the torch environment after ours on PYTHONPATH.
    printf '#!/bin/sh\nPYTHONPATH="%s/site:%s${PYTHONPATH:+:$PYTHONPATH}" exec "%s" "$@"\n' \
      "$env_dir" "$torch_site" "$python" >"$env_dir/bin/python"
  fi
  # torchvision and torchaudio (imported by the data module) built for torch 2.11.0.
  pip_install "$env_dir" --no-deps "llamafactory==$LF_VERSION" "trl==0.24.0" \
    "torchvision==0.26.0" "torchaudio==2.11.0"
  # What `llamafactory-cli train` imports (datasets within LLaMA-Factory's <= 4.0.0),
  # matplotlib for `plot_loss`, tensorboard for the study's `report_to: tensorboard`.
  pip_install "$env_dir" "datasets==4.0.0" pandas "matplotlib>=3.7.0" fire omegaconf pydantic \
    "tyro<0.9.0" sentencepiece tiktoken einops scipy protobuf tensorboard
  if [ ! -f "$env_dir/pyvenv.cfg" ]; then
    # `pip --target` writes console scripts for the system interpreter: run the module instead.
    printf '#!/bin/sh\nexec "%s/bin/python" -m llamafactory.cli "$@"\n' "$env_dir" >"$env_dir/bin/llamafactory-cli"
    chmod +x "$env_dir/bin/llamafactory-cli"
  fi
  "$env_dir/bin/llamafactory-cli" version >&2
  echo "$torch_site" >"$root/.ok"
fi

# A bin directory holding only the launcher (a link, so tw finds the venv's python
# beside it when it records the versions in the cache key), not the venv's `python`.
mkdir -p "$root/bin"
ln -sfn "$env_dir/bin/llamafactory-cli" "$root/bin/llamafactory-cli"
echo "export PATH=\"$root/bin:\$PATH\""
echo "export TW_LLAMAFACTORY_CLI=$root/bin/llamafactory-cli"
