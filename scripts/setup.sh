#!/usr/bin/env bash
# Set up everything the app needs, on a fresh machine or an existing one.
#   scripts/setup.sh          the app
#   scripts/setup.sh test     the app and the test tools
# Installs into the active virtual/conda environment if there is one, else into .venv.
# A torch that is already installed there (say, a CUDA build) is kept as it is;
# TORCH_SPEC chooses what to install when there is none (default: torch).
set -euo pipefail
cd "$(dirname "$0")/.."
extras=""
[ "${1:-}" = "test" ] && extras="[test]"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# 1. System libraries: Qt's X11/Wayland plugins, PortAudio (microphone) and espeak-ng (speech).
if [ "$(uname -s)" = Linux ] && command -v apt-get >/dev/null 2>&1 && command -v dpkg >/dev/null 2>&1; then
  want="portaudio19-dev espeak-ng libegl1 libgl1 libglib2.0-0 libfontconfig1 libdbus-1-3 libxkbcommon0
        libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-shape0 libxcb-randr0
        libxcb-render-util0 libxcb-image0 libxcb-xinerama0"
  missing=""
  for p in $want; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
  if [ -n "$missing" ]; then
    sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
    say "Installing system packages:$missing"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
  fi
elif [ "$(uname -s)" = Darwin ] && command -v brew >/dev/null 2>&1; then
  brew list portaudio >/dev/null 2>&1 || brew install portaudio
fi

# 2. A Python environment.
if [ -n "${VIRTUAL_ENV:-}${CONDA_PREFIX:-}" ]; then
  py=python
else
  if [ ! -x .venv/bin/python ]; then
    say "Creating the virtual environment .venv"
    "${PYTHON:-python3}" -m venv .venv
  fi
  py=.venv/bin/python
fi

# 3. PyTorch: keep an installed one (a GPU build stays a GPU build).
if "$py" -c "import torch" >/dev/null 2>&1; then
  say "Keeping the installed torch $("$py" -c 'import torch; print(torch.__version__)')"
else
  say "Installing ${TORCH_SPEC:-torch}"
  "$py" -m pip install --quiet "${TORCH_SPEC:-torch}"
fi

# 4. Test mode: the llama.cpp server the remote-backend tests run.  Built from source
#    for a portable x86-64 CPU (AVX2/FMA/F16C): the default native build picks up
#    instructions (AMX) that crash on some CPUs.  Skipped when already importable.
if [ -n "$extras" ] && ! "$py" -c "import llama_cpp.server.app" >/dev/null 2>&1; then
  say "Building llama-cpp-python[server] (a few minutes)"
  if [ "$(uname -m)" = x86_64 ]; then
    export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON}"
  fi
  "$py" -m pip install --quiet "llama-cpp-python[server]"
fi

# 5. The app and its Python packages.
say "Installing the app's Python packages"
"$py" -m pip install --quiet -e ".$extras"

# 6. The wake word ("Hey Jarvis"), where its package has a build for this system.
if ! "$py" -c "import pymicro_wakeword" >/dev/null 2>&1; then
  "$py" -m pip install --quiet "pymicro-wakeword>=2.5,<3" 2>/dev/null \
    || say "No wake-word package for this system (it needs Linux with glibc 2.35+ or Windows): everything but the wake word works"
fi
