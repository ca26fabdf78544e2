#!/usr/bin/env bash
# redlease against its peers on PyPI (a benchmark, not a test):
#
#   bash scripts/bench_peers.sh [bench/bench_peers.py args, e.g. --quick, --no-readme]
#
# 1. scripts/setup.sh (apt packages, .venv with redlease);
# 2. a venv for the comparison, bench/.venv-peers (or $REDLEASE_PEERS_VENV),
#    with redis (redis-py), python-redis-lock, pottery and matplotlib from
#    PyPI (installed once) and redlease from this working tree (every run);
# 3. bench/bench_peers.py in that venv: throwaway redis-server on a free
#    loopback port, the table on stdout, bench/results/peers.{md,png}, the
#    table in README.md's Benchmarks section.
# Every process it starts is stopped at the end, also on Ctrl-C.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

export PIP_DISABLE_PIP_VERSION_CHECK=1
export PIP_NO_INPUT=1
export REDLEASE_DEV="${REDLEASE_DEV:-1}"

log() { printf '[bench_peers] %s\n' "$*"; }
die() { printf '[bench_peers] ERROR: %s\n' "$*" >&2; exit 1; }

T0=$(date +%s)
bash "$ROOT/scripts/setup.sh"

VENV="${REDLEASE_PEERS_VENV:-$ROOT/bench/.venv-peers}"
VPY="$VENV/bin/python"
PEERS=(redis python-redis-lock pottery matplotlib)

if [ -x "$VPY" ] && "$VPY" -c 'import sys, pip' >/dev/null 2>&1; then
    log "venv present: $VENV"
else
    rm -rf "$VENV"
    PY="$(command -v python3 || true)"
    [ -n "$PY" ] || die "python3 not found on PATH"
    log "creating venv: $PY -m venv $VENV"
    "$PY" -m venv "$VENV" || die "python3 -m venv failed"
fi

if "$VPY" -c 'import redis, redis_lock, pottery, matplotlib' >/dev/null 2>&1; then
    log "peers present: $("$VPY" -m pip list 2>/dev/null | grep -iE '^(redis|python-redis-lock|pottery|matplotlib) ' | awk '{printf "%s %s, ", $1, $2}' | sed 's/, $//')"
else
    log "running: pip install ${PEERS[*]}"
    "$VPY" -m pip install -q "${PEERS[@]}" || die "installing the peers from PyPI failed"
fi

log "running: pip install ./  (redlease from the working tree, into the peers venv)"
"$VPY" -m pip install -q --force-reinstall --no-deps ./ || die "installing redlease failed"

log "setup took $(( $(date +%s) - T0 )) s; running: bench/bench_peers.py $*"
# exec: Ctrl-C and SIGTERM go straight to the bench, which stops what it started.
exec "$VPY" "$ROOT/bench/bench_peers.py" "$@"
