#!/usr/bin/env bash
# Install headless Chromium and its WebDriver (chromedriver) for the study browser's
# tests, where the package manager allows, then check that both run:
#
#   scripts/setup-browser.sh      # exits 0 when chromium and chromedriver work
#
# As root it installs with apt-get (Debian's `chromium` and `chromium-driver`); as
# another user it uses sudo when that needs no password. Elsewhere, install Chromium or
# Chrome and the matching chromedriver yourself and point TW_CHROMIUM / TW_CHROMEDRIVER
# at them.
set -euo pipefail

find_bin() {
  local var=$1
  shift
  if [ -n "${!var:-}" ] && [ -x "${!var}" ]; then
    echo "${!var}"
    return 0
  fi
  for name in "$@"; do
    if command -v "$name" >/dev/null 2>&1; then
      command -v "$name"
      return 0
    fi
  done
  return 1
}

have_both() {
  find_bin TW_CHROMIUM chromium chromium-browser google-chrome >/dev/null &&
    find_bin TW_CHROMEDRIVER chromedriver >/dev/null
}

if ! have_both; then
  sudo=""
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
      sudo="sudo -n"
    else
      echo "setup-browser.sh: chromium or chromedriver is missing and I cannot install packages; install them and set TW_CHROMIUM / TW_CHROMEDRIVER" >&2
      exit 1
    fi
  fi
  if command -v apt-get >/dev/null; then
    $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium chromium-driver >&2
  else
    echo "setup-browser.sh: no apt-get here; install Chromium and chromedriver and set TW_CHROMIUM / TW_CHROMEDRIVER" >&2
    exit 1
  fi
fi

chromium=$(find_bin TW_CHROMIUM chromium chromium-browser google-chrome)
driver=$(find_bin TW_CHROMEDRIVER chromedriver)
"$chromium" --version >&2
"$driver" --version >&2
echo "export TW_CHROMIUM=$chromium TW_CHROMEDRIVER=$driver"
