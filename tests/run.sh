#!/usr/bin/env bash
# The whole test suite from nothing, in phases, each timed:
#   1. the README's install alone (`pip install -e .`, then the README's `pip install jupyterlab`) and
#      tests/readme_install.py: every console script, the README's main job, the app, a notebook in Jupyter;
#   2. Debian's Chromium and Playwright, in an environment of their own (.venv-browser), and
#      tests/browser_check.py: uploads to the app of the README's install, on the main job's model;
#      then tests/docs_check.py: the committed docs site's sidebar, search and links;
#      then tests/space_check.py: `pet_breeds_export --space` of that model, run as a Space runs it, in a venv of
#      its own (.venv-space) holding only the folder's requirements.txt, in Chromium and through gradio_client;
#   3. the dev requirements;
#   4. every notebook with nbdev_test, in two processes;
#   5. tests/ with pytest, in two processes.
# Safe to re-run: it reuses .venv (phase 1 then runs in an environment that holds more than the README's install).
set -euo pipefail
cd "$(dirname "$0")/.."
export MPLBACKEND=Agg
# torch.compile's code from an earlier run is not reused: inductor's cache key leaves out oneDNN's ISA, and a graph
# compiled with AVX512 oneDNN then run with ONEDNN_MAX_CPU_ISA=AVX2 (the AVX2 stand-in below) trained to losses of 18
# instead of 1.45 (measured, 2026-12-06); with a cache of its own each run compiles afresh (seconds, for the small nets)
export TORCHINDUCTOR_CACHE_DIR="${TORCHINDUCTOR_CACHE_DIR:-$(mktemp -d)}"
START=$SECONDS
phase() {   # phase NAME COMMAND...: run it, then say how long it took
  local name=$1 t=$SECONDS; shift
  echo "== phase: $name"
  "$@"
  echo "== phase: $name: $(( SECONDS - t )) s (total $(( SECONDS - START )) s)"
}
install_readme() {
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/pip install -q -c constraints.txt -e .   # the README's first command's install
  .venv/bin/pip install -q jupyterlab      # the README's "Explore in Jupyter"
}
install_browser() {   # kept apart from .venv, so the app is checked with the README's install alone
  if ! command -v chromium >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -q && $SUDO apt-get install -y -q chromium
  fi
  [ -x .venv-browser/bin/python ] || python3 -m venv .venv-browser
  .venv-browser/bin/pip install -q "playwright>=1.40"   # drives Debian's Chromium: no `playwright install`
}
README_RUN=$(mktemp -d)/pets
phase "README install" install_readme
phase "README commands (tests/readme_install.py)" .venv/bin/python tests/readme_install.py "$README_RUN"
phase "browser install" install_browser
# the app under load (issue 33) in full: 30 page views one after another, culling (at --cull_idle 20), the timed-out
# page, 6 people at once and the 503
phase "README app in Chromium (tests/browser_check.py)" .venv-browser/bin/python tests/browser_check.py "$README_RUN"
phase "docs site in Chromium (tests/docs_check.py)" .venv-browser/bin/python tests/docs_check.py
# the main job's model as a Gradio app for a Hugging Face Space, run from a venv holding only its requirements.txt
# (.venv-space, reused while they stay the same: the first pip install takes about 20 s from PyPI)
phase "the Space in its own venv, in Chromium (tests/space_check.py)" .venv-browser/bin/python tests/space_check.py "$README_RUN"
phase "dev install" .venv/bin/pip install -q -c constraints.txt -e ".[dev]"
# two processes of one thread each (OMP_NUM_THREADS=1), for the notebooks and for pytest (pytest-xdist, a file's
# tests in one worker, so that its module fixtures, a trained run or a served app, are made once): much of a notebook's
# or a test's time is Python, which holds one core, so one process with two threads leaves a core idle, and two
# processes with two threads each fight over the cores (the benchmarks page's suite table has the figures)
ONE_THREAD="env OMP_NUM_THREADS=1"
PET_BREEDS_CACHE=$(mktemp -d) phase "notebooks (nbdev_test)" $ONE_THREAD .venv/bin/nbdev_test --n_workers 2 --timing
phase "pytest" $ONE_THREAD .venv/bin/pytest tests -q -p no:cacheprovider -n 2 --dist loadfile --durations=15 "$@"
