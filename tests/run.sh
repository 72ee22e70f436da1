#!/usr/bin/env bash
# The whole test suite from nothing, in phases, each timed:
#   1. the README's install alone (`pip install -e .`, then the README's `pip install jupyterlab`) and
#      tests/readme_install.py: every console script, the README's main job, the app, a notebook in Jupyter;
#   2. the dev requirements and Debian's Chromium;
#   3. every notebook with nbdev_test;
#   4. tests/ with pytest (the browser test uses phase 1's model).
# Safe to re-run: it reuses .venv (phase 1 then runs in an environment that holds more than the README's install).
set -euo pipefail
cd "$(dirname "$0")/.."
export MPLBACKEND=Agg
START=$SECONDS
phase() {   # phase NAME COMMAND...: run it, then say how long it took
  local name=$1 t=$SECONDS; shift
  echo "== phase: $name"
  "$@"
  echo "== phase: $name: $(( SECONDS - t )) s (total $(( SECONDS - START )) s)"
}
install_readme() {
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/pip install -q -e .            # the README's first command's install
  .venv/bin/pip install -q jupyterlab      # the README's "Explore in Jupyter"
}
install_dev() {
  .venv/bin/pip install -q -e ".[dev]"
  if ! command -v chromium >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -q && $SUDO apt-get install -y -q chromium
  fi
}
README_RUN=$(mktemp -d)/pets
export PET_BREEDS_README_RUN=$README_RUN   # the main job's model, for the browser test
phase "README install" install_readme
phase "README commands (tests/readme_install.py)" .venv/bin/python tests/readme_install.py "$README_RUN"
phase "dev install" install_dev
phase "notebooks (nbdev_test)" .venv/bin/nbdev_test --n_workers 2 --timing
phase "pytest" .venv/bin/pytest tests -q -p no:cacheprovider --durations=15 "$@"
