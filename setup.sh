#!/usr/bin/env bash
# One command sets up audio2anim on a fresh Debian machine: system packages, a virtual
# environment in .venv with the package and its dev extras, and the browser viewer's npm modules.
set -euo pipefail
cd "$(dirname "$0")"

APT_PACKAGES=(
  espeak-ng libespeak-ng1                                   # TTS with phoneme events (corpus)
  festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts   # more TTS voices
  flite                                                     # two more speakers (flite:awb, flite:rms)
  sox                                                       # audio checks in tests/docs
  alsa-utils ktuberling-data tuxpaint-stamps-default        # real recorded speech (bench/real_speech.py)
  asterisk-core-sounds-en-g722 asterisk-core-sounds-en      # real speech + transcripts (data asterisk)
  libegl1 libegl-mesa0 libgl1 libgl1-mesa-dri               # headless OpenGL (EGL + llvmpipe)
  libportaudio2                                             # microphone / speaker (sounddevice)
  chromium                                                  # browser viewer tests (headless)
)
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
missing=()
for p in "${APT_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
# npm installs three.js for the browser viewer; a machine's own Node.js (which bundles npm) is fine
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q --upgrade pip
# torch first and pinned: its CPU wheel is local; anything unpinned would pull a CUDA build.
.venv/bin/pip install -q "torch==2.13.0"
.venv/bin/pip install -q -e ".[dev]"

if [ -f audio2anim/sinks/viewer/package.json ]; then
  (cd audio2anim/sinks/viewer && npm ci --no-audit --no-fund --silent)
fi
# the Kokoro TTS voices (npm kokoro-js's voice files, sha256 checked; kept when present)
.venv/bin/audio2anim data kokoro-voices --quiet
echo "setup: done. Run the tests with: .venv/bin/python -m pytest"
