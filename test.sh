#!/usr/bin/env bash
# Set everything up and run the whole test suite (headless: Qt runs offscreen).
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh test
py=python; [ -z "${VIRTUAL_ENV:-}${CONDA_PREFIX:-}" ] && py=.venv/bin/python
export QT_QPA_PLATFORM=offscreen HF_HUB_OFFLINE=1
"$(dirname "$py")/lint-imports" --no-cache
# Two test processes (pytest-xdist) by default: much of the suite waits (real-time audio and
# video, servers, the start-up of the command-line tests), so two share two cores well.
# TEST_WORKERS=0 runs everything in one process.
exec "$py" -m pytest -n "${TEST_WORKERS:-2}" "$@"
