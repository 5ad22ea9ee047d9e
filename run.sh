#!/usr/bin/env bash
# Set everything up (first run) and open the assistant. Extra arguments go to main.py.
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh
py=python; [ -z "${VIRTUAL_ENV:-}${CONDA_PREFIX:-}" ] && py=.venv/bin/python
exec "$py" main.py "$@"
