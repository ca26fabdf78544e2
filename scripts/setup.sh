#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian (bookworm) machine.
#
#   1. apt packages: libhiredis-dev libssl-dev openssl redis-server pkg-config build-essential
#      python3-venv -- installed only when one of them is missing
#      (with sudo when not root).
#   2. .venv in the repository, made with the `python3` found on PATH.
#   3. pip install ./ (the redlease package, builds the C core), pytest and uvloop.
#
# Safe to run again: steps already done are skipped, except the package
# install, which always rebuilds so the venv matches the working tree.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

export DEBIAN_FRONTEND=noninteractive
export PIP_DISABLE_PIP_VERSION_CHECK=1
export PIP_NO_INPUT=1
# Development build of the C core (setup.py): compiler warnings are errors.
export REDLEASE_DEV="${REDLEASE_DEV:-1}"

log() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- apt packages
APT_PACKAGES=(libhiredis-dev libssl-dev openssl redis-server pkg-config build-essential python3-venv)

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo DEBIAN_FRONTEND=noninteractive)
else
    SUDO=()   # not root and no sudo: apt-get will fail below if it is needed
fi

pkg_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

if command -v dpkg-query >/dev/null 2>&1; then
    missing=()
    for p in "${APT_PACKAGES[@]}"; do
        pkg_installed "$p" || missing+=("$p")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        log "missing apt packages: ${missing[*]}"
        log "running: apt-get update"
        "${SUDO[@]}" apt-get update -q
        log "running: apt-get install -y ${missing[*]}"
        "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
    else
        log "apt packages present: ${APT_PACKAGES[*]}"
    fi
else
    log "dpkg-query not found: not a Debian system, skipping apt step"
    log "make sure hiredis (dev files), pkg-config, a C compiler and redis-server are installed"
fi

for tool in pkg-config redis-server cc; do
    command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found on PATH after set-up"
done
pkg-config --exists hiredis || die "pkg-config cannot find hiredis (install libhiredis-dev)"
log "hiredis $(pkg-config --modversion hiredis), $(redis-server --version | awk '{sub("v=","redis ",$3); print $3}')"

# ------------------------------------------------------------------------ venv
PY="$(command -v python3 || true)"
[ -n "$PY" ] || die "python3 not found on PATH"
VENV="$ROOT/.venv"
VPY="$VENV/bin/python"

if [ -x "$VPY" ] && "$VPY" -c 'import sys, pip' >/dev/null 2>&1; then
    log "venv present: .venv ($("$VPY" --version 2>&1))"
else
    if [ -e "$VENV" ]; then
        log "removing broken venv .venv"
        rm -rf "$VENV"
    fi
    log "creating venv: $PY -m venv .venv ($("$PY" --version 2>&1))"
    "$PY" -m venv "$VENV" || die "python3 -m venv failed (is python3-venv installed for $PY?)"
    log "running: pip install -U pip"
    "$VPY" -m pip install -q -U pip
fi

# --------------------------------------------------------------------- package
log "running: pip install ./  (builds the redlease C core)"
if ! "$VPY" -m pip install ./; then
    die "building/installing the redlease package failed (see the compiler output above)"
fi
(cd / && "$VPY" -c 'import redlease; print("[setup] redlease", redlease.__version__, "from", redlease.__file__)') \
    || die "redlease was installed but cannot be imported"

if "$VPY" -c 'import pytest' >/dev/null 2>&1; then
    log "pytest present"
else
    log "running: pip install pytest"
    "$VPY" -m pip install -q pytest
fi

# mypy checks the stubs against the runtime and a typed user script
# (tests/test_typing.py; skipped without it).
if "$VPY" -c 'import mypy' >/dev/null 2>&1; then
    log "mypy present"
else
    log "running: pip install mypy (for the typing tests)"
    "$VPY" -m pip install -q mypy || log "mypy not installed; the typing tests will be skipped"
fi

# README's recipes are run by tests/test_recipes.py: FastAPI + uvicorn, Celery
# (with its Redis transport).  Without them those recipes are skipped.
if "$VPY" -c 'import fastapi, uvicorn, celery, redis' >/dev/null 2>&1; then
    log "fastapi, uvicorn, celery present"
else
    log "running: pip install fastapi uvicorn celery[redis] (for the README recipe tests)"
    "$VPY" -m pip install -q fastapi uvicorn "celery[redis]" \
        || log "recipe dependencies not installed; those recipe tests will be skipped"
fi

# uvloop lets the asyncio tests also run on uvloop; they skip those cases
# without it, so a failed install is not fatal.
if "$VPY" -c 'import uvloop' >/dev/null 2>&1; then
    log "uvloop present"
else
    log "running: pip install uvloop (optional, for the asyncio tests)"
    "$VPY" -m pip install -q uvloop || log "uvloop not installed; its test cases will be skipped"
fi

log "done"
