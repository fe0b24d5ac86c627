#!/usr/bin/env bash
# Install bubblewrap (the sandbox engine) where the package manager allows,
# then check that it runs here (it needs unprivileged user namespaces):
#
#   scripts/setup-sandbox.sh        # exits 0 when `bwrap` works, else says why
#
# As root it installs with apt-get, dnf, yum, zypper, pacman or apk; as
# another user it uses sudo when that needs no password. Where neither is
# possible it prints how to build bubblewrap into ~/.local (then set
# TW_BWRAP). `tw sandbox check` says what isolation programs then get.
set -euo pipefail

have_bwrap() {
  local b=${TW_BWRAP:-$(command -v bwrap 2>/dev/null || true)}
  [ -n "$b" ] && [ -x "$b" ] && echo "$b"
}

install() {
  local sudo=""
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
      sudo="sudo -n"
    else
      return 1
    fi
  fi
  if command -v apt-get >/dev/null; then
    $sudo apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq bubblewrap >&2
  elif command -v dnf >/dev/null; then
    $sudo dnf install -y -q bubblewrap >&2
  elif command -v yum >/dev/null; then
    $sudo yum install -y -q bubblewrap >&2
  elif command -v zypper >/dev/null; then
    $sudo zypper --non-interactive install bubblewrap >&2
  elif command -v pacman >/dev/null; then
    $sudo pacman -S --noconfirm bubblewrap >&2
  elif command -v apk >/dev/null; then
    $sudo apk add bubblewrap >&2
  else
    return 1
  fi
}

bwrap=$(have_bwrap || true)
if [ -z "$bwrap" ]; then
  echo "setup-sandbox.sh: installing bubblewrap" >&2
  if ! install; then
    cat >&2 <<'EOF'
setup-sandbox.sh: cannot install bubblewrap here (no root, no passwordless sudo,
or no known package manager). Ask an administrator for the `bubblewrap` package
(Debian/Ubuntu: apt-get install bubblewrap; Fedora/RHEL: dnf install bubblewrap),
or build it into ~/.local without root:
    pip install --user meson ninja
    git clone https://github.com/containers/bubblewrap && cd bubblewrap
    meson setup _build --prefix="$HOME/.local" -Dselinux=disabled -Dman=disabled
    meson compile -C _build && meson install -C _build
    export TW_BWRAP="$HOME/.local/bin/bwrap"
EOF
    exit 1
  fi
  bwrap=$(have_bwrap)
fi
# As root, tw runs bubblewrap as `nobody`; try it the same way.
run_as=()
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
  run_as=(setpriv --reuid 65534 --regid 65534 --clear-groups --)
fi
if ! err=$("${run_as[@]}" "$bwrap" --unshare-all --die-with-parent --ro-bind / / \
    --proc /proc --dev /dev true 2>&1); then
  cat >&2 <<EOF
setup-sandbox.sh: $bwrap is installed but cannot create a sandbox: $err
  It needs unprivileged user namespaces: check \`sysctl user.max_user_namespaces\`
  (> 0) and, on Debian before 11, \`sysctl kernel.unprivileged_userns_clone=1\`;
  on Ubuntu 24.04, AppArmor must allow bwrap its user namespace
  (\`sysctl kernel.apparmor_restrict_unprivileged_userns\`). In a container, run
  it with user namespaces allowed (e.g. docker --security-opt seccomp=unconfined).
EOF
  exit 1
fi
echo "setup-sandbox.sh: $bwrap ($("$bwrap" --version)) runs here" >&2
