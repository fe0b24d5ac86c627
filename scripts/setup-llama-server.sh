#!/usr/bin/env bash
# Build llama.cpp's OpenAI-compatible `llama-server` from the llama.cpp source bundled in
# the PyPI source package of `llama-cpp-python` (no GitHub access is needed), with cmake
# and ninja from PyPI. Prints an `export` line:
#
#   eval "$(scripts/setup-llama-server.sh)"    # TW_LLAMA_SERVER
#
# The build takes about 10 minutes on 2 cores; it is cached under
# ${TW_CACHE_HOME:-$HOME/.cache/tw}/v1/llama-server-<version>-avx2 and reused.
set -euo pipefail
version="0.3.36"
# A portable build (AVX2, no -march=native): a native build on a virtual machine
# whose CPU reports AMX that the hypervisor does not give it crashes in ggml's
# AMX kernels, and a cache may be shared with a machine of another CPU.
flavour="avx2"
root="${TW_CACHE_HOME:-$HOME/.cache/tw}/v1/llama-server-$version-$flavour"
tools="$root/tools-venv"
mkdir -p "$root"

. "$(dirname "$0")/python.sh"

if [ ! -f "$root/.ok" ]; then
  if [ ! -f "$tools/.ok" ]; then
    echo "setup-llama-server.sh: creating the build-tools venv" >&2
    make_env "$tools"
    pip_install "$tools" "cmake>=3.28,<4" "ninja" "scikit-build-core>=0.10"
    touch "$tools/.ok"
  fi
  tool_bin="$tools/bin"
  [ -x "$tool_bin/cmake" ] || tool_bin="$tools/site/bin"
  echo "setup-llama-server.sh: fetching the llama-cpp-python==$version source package" >&2
  rm -rf "$root/src" "$root/download" "$root/build"
  mkdir -p "$root/download" "$root/src"
  PATH="$tool_bin:$PATH" "$tools/bin/python" -m pip download --quiet --disable-pip-version-check \
    --no-deps --no-binary llama-cpp-python --no-build-isolation "llama-cpp-python==$version" \
    -d "$root/download" >&2
  tar -xzf "$root/download"/llama_cpp_python-"$version".tar.gz -C "$root/src" --strip-components=1
  rm -rf "$root/download"
  echo "setup-llama-server.sh: building llama-server (about 10 minutes on 2 cores)" >&2
  PATH="$tool_bin:$PATH" cmake -S "$root/src/vendor/llama.cpp" -B "$root/build" -G Ninja \
    -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON \
    -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
    -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF >&2
  PATH="$tool_bin:$PATH" cmake --build "$root/build" --target llama-server -j "$(nproc)" >&2
  mkdir -p "$root/bin"
  cp "$root/build/bin/llama-server" "$root/bin/llama-server"
  rm -rf "$root/build" "$root/src"
  touch "$root/.ok"
fi

echo "export TW_LLAMA_SERVER=$root/bin/llama-server"
