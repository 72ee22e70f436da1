#!/usr/bin/env bash
# The whole test suite from nothing: venv, packages (PyTorch from this machine's disk), Chromium for
# the browser test, then nbdev's notebook tests and pytest. Safe to re-run: it reuses .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q -e ".[dev]"
if ! command -v chromium >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -q && $SUDO apt-get install -y -q chromium
fi
export MPLBACKEND=Agg
.venv/bin/nbdev_test --n_workers 2 --timing
.venv/bin/pytest tests -q -p no:cacheprovider --durations=15 "$@"
