#!/usr/bin/env bash
# Install what the browser tests (tests/test_report.py, tests/test_viewer.py) need:
# Debian's Chromium (the tests drive /usr/bin/chromium headless; Playwright's own browser
# download is not used) and the Python Playwright driver library into the active venv.
# Safe to run again; without root or without network the tests skip with a message instead.
set -uo pipefail
if ! command -v chromium >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" != "0" ]; then SUDO="sudo -n"; fi
    if command -v apt-get >/dev/null 2>&1; then
        $SUDO apt-get update -qq \
            && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver \
            || echo "install_browser.sh: could not apt-get install chromium; browser tests will skip" >&2
    else
        echo "install_browser.sh: no apt-get; install Chromium yourself or browser tests will skip" >&2
    fi
fi
python -m pip install -q "playwright>=1.45" \
    || echo "install_browser.sh: could not pip install playwright; browser tests will skip" >&2
exit 0
