#!/usr/bin/env bash
# ettlib's two set-up commands, each installing what it needs on a fresh machine:
#
#   ./workbench.sh report   demo data -> default experiment report (HTML path printed)
#   ./workbench.sh test     the whole test suite (extra arguments go to pytest)
#
# Installs into ./.venv: the CPU build of PyTorch first (torch==2.13.0), then
# this project with `pip install -e .[test] torch==2.13.0`.  Re-running skips what is installed.
set -euo pipefail
cd "$(dirname "$0")"

VENV=.venv
TORCH=torch==2.13.0  # the CPU wheel
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}

install() {  # install EXTRAS: create the venv; install the project once per change of pyproject.toml or this file
    local extras=$1
    if [ ! -x "$VENV/bin/python" ]; then
        "$PYTHON" -m venv "$VENV"
    fi
    local stamp="$VENV/.installed-$extras"
    local want
    want=$(cat pyproject.toml workbench.sh | sha256sum | cut -c1-16)  # reinstall when either changes
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        "$VENV/bin/python" -m pip install -q --upgrade pip
        "$VENV/bin/python" -m pip install -q "$TORCH"
        # torch pinned again: backtracking over s3fs/aiobotocore/fsspec, pip otherwise "upgrades"
        # the installed CPU torch to the newest CUDA build (torch 2.14.1+cu130, a 6.9 GB venv)
        "$VENV/bin/python" -m pip install -q -e ".[$extras]" "$TORCH"
        echo "$want" > "$stamp"
    fi
}

ensure_chromium() {  # the browser test drives Debian's chromium through Playwright
    if command -v chromium >/dev/null 2>&1; then
        return
    fi
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing Debian's chromium for the browser test ..."
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "note: chromium not found and not root: the browser test will be skipped" >&2
    fi
}

case "${1:-}" in
    report)
        shift
        install test
        exec "$VENV/bin/ett" report "$@"
        ;;
    test)
        shift
        install test
        ensure_chromium
        exec "$VENV/bin/python" -m pytest "$@"
        ;;
    *)
        echo "usage: ./workbench.sh report | test [pytest args]" >&2
        exit 2
        ;;
esac
