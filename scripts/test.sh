#!/usr/bin/env bash
# Install splatkit with its test extras into .venv and run the test suite.
# torch is installed first at 2.13.0: on a machine without a GPU that is the CPU build
# (a newer or unpinned torch would pull the multi-GB CUDA build).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q torch==2.13.0
python -m pip install -q -e '.[test]'
# Independent readers and a real browser for the export, report and viewer tests; those tests
# skip with a message where these cannot be installed.
bash scripts/install_browser.sh || echo "browser not installed: browser tests will skip"
bash scripts/install_node_tools.sh || echo "splat-transform not installed: its tests will skip"
ruff check splatkit tests scripts unreal_export
python -m pytest -q "$@"
