#!/usr/bin/env bash
# Run the test suite on several Python versions, each in its own venv:
#
#   bash scripts/test_versions.sh [VERSION...] [-- extra pytest args...]
#
# VERSIONs are major.minor (default: 3.10 3.11 3.12 3.13).  For each one the
# interpreter is looked up in pyenv ($PYENV_ROOT/versions/X.Y.*, newest patch
# first), then as pythonX.Y on PATH (pyenv shims excluded).  A version that is
# not found is skipped and reported as such.  For each version found:
#   .venv-X.Y in the repository (created if missing), pip install ./ (a
#   -Werror build: REDLEASE_DEV=1), pytest, uvloop when installable, then
#   python -m pytest -q tests.
# Exit status: 0 only if every version that ran passed and at least one ran
# (see REDLEASE_VERSIONS_ALLOW_NONE); pytest's "no tests ran" (exit 5) and a
# version not started for lack of time count as failures.
#
# Environment:
#   REDLEASE_VERSION_TIMEOUT  cap in seconds per version (venv, build and
#                             suite); default 420.  A version over its cap is
#                             killed (its whole process group) and fails.
#   REDLEASE_VERSIONS_ALLOW_NONE=1  no version found is not a failure (CI on a
#                             machine that has only the default python3)
#   REDLEASE_VERSIONS_DEADLINE  optional absolute end (seconds since 1970,
#                             `date +%s`) for the whole run: each version's cap
#                             is shortened to fit, and versions that no
#                             longer fit are not started and count as failed.
# The system packages (hiredis, redis-server, a compiler) are the ones
# scripts/setup.sh installs; this script does not install them.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

export PIP_DISABLE_PIP_VERSION_CHECK=1
export PIP_NO_INPUT=1
export REDLEASE_DEV="${REDLEASE_DEV:-1}"
CAP="${REDLEASE_VERSION_TIMEOUT:-420}"

log() { printf '[versions] %s\n' "$*"; }

versions=()
pytest_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --) shift; pytest_args=("$@"); break ;;
        *) versions+=("$1"); shift ;;
    esac
done
[ "${#versions[@]}" -gt 0 ] || versions=(3.10 3.11 3.12 3.13)

# find_python X.Y -> path of an interpreter that really is X.Y, or nothing
find_python() {
    local want="$1" cand pyroot
    local cands=()
    pyroot="${PYENV_ROOT:-$HOME/.pyenv}"
    if [ -d "$pyroot/versions" ]; then
        # newest patch release first (sort -V), plain CPython builds only
        while IFS= read -r d; do
            cands+=("$d/bin/python$want")
        done < <(ls -d "$pyroot/versions/$want".* 2>/dev/null | grep -E "/$want\.[0-9]+$" | sort -rV)
    fi
    cand="$(type -P "python$want" 2>/dev/null || true)"
    if [ -n "$cand" ] && [[ "$cand" != */shims/* ]]; then
        cands+=("$cand")
    fi
    for cand in "${cands[@]}"; do
        [ -x "$cand" ] || continue
        if "$cand" -c "import sys; sys.exit(0 if '%d.%d' % sys.version_info[:2] == '$want' else 1)" \
                >/dev/null 2>&1; then
            printf '%s\n' "$cand"
            return 0
        fi
    done
    return 1
}

# run_one X.Y PYTHON [pytest args]: runs in a child bash under `timeout`
run_one() {
    local ver="$1" py="$2" venv="$ROOT/.venv-$1"
    local vpy="$venv/bin/python"
    shift 2
    local pytest_args=("$@")
    if ! { [ -x "$vpy" ] && "$vpy" -c 'import sys, pip' >/dev/null 2>&1; }; then
        rm -rf "$venv"
        log "$ver: creating $venv with $py"
        "$py" -m venv "$venv" || { log "$ver: venv creation failed"; return 1; }
    fi
    log "$ver: pip install ./ (REDLEASE_DEV=$REDLEASE_DEV: -Werror build)"
    "$vpy" -m pip install -q ./ || { log "$ver: building/installing redlease failed"; return 1; }
    (cd / && "$vpy" -c 'import redlease, sys; print("[versions] %s: redlease %s on %s" % (sys.version.split()[0], redlease.__version__, sys.executable))') \
        || { log "$ver: redlease does not import"; return 1; }
    "$vpy" -c 'import pytest' >/dev/null 2>&1 || "$vpy" -m pip install -q pytest \
        || { log "$ver: pip install pytest failed"; return 1; }
    if ! "$vpy" -c 'import uvloop' >/dev/null 2>&1; then
        "$vpy" -m pip install -q uvloop >/dev/null 2>&1 \
            || log "$ver: uvloop not installable; its asyncio cases will be skipped"
    fi
    log "$ver: running: python -m pytest -q tests ${pytest_args[*]}"
    "$vpy" -m pytest -q tests "${pytest_args[@]}"
    local rc=$?
    if [ "$rc" -eq 5 ]; then
        log "$ver: pytest collected no tests (exit 5): failure"
        return 1
    fi
    return "$rc"
}

ran=()
skipped=()
failed=()
summary=()
for ver in "${versions[@]}"; do
    if ! py="$(find_python "$ver")"; then
        log "$ver: not found (pyenv or PATH): skipped"
        skipped+=("$ver")
        continue
    fi
    t0=$(date +%s)
    cap="$CAP"
    if [ -n "${REDLEASE_VERSIONS_DEADLINE:-}" ]; then
        left=$(( REDLEASE_VERSIONS_DEADLINE - t0 - 20 ))   # 20 s: kill-after and summary
        [ "$left" -lt "$cap" ] && cap="$left"
        if [ "$cap" -lt 60 ]; then
            log "$ver: not started: only ${left}s left before the deadline"
            summary+=("$ver ($py): NOT RUN (out of time)")
            failed+=("$ver")
            continue
        fi
    fi
    log "$ver: using $py (cap ${cap}s)"
    # each version in its own process group under a hard cap
    export -f run_one log
    export ROOT
    timeout --kill-after=15s "$cap" bash -c 'run_one "$@"' run_one "$ver" "$py" \
        "${pytest_args[@]}" </dev/null
    rc=$?
    dt=$(( $(date +%s) - t0 ))
    ran+=("$ver")
    if [ "$rc" -eq 0 ]; then
        summary+=("$ver ($py): passed in ${dt}s")
    elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        summary+=("$ver ($py): TIMED OUT after ${dt}s (cap ${cap}s)")
        failed+=("$ver")
    else
        summary+=("$ver ($py): FAILED (exit $rc) in ${dt}s")
        failed+=("$ver")
    fi
done

log "summary:"
for line in "${summary[@]}"; do log "  $line"; done
log "ran: ${ran[*]:-none}; skipped (not found): ${skipped[*]:-none}; failed: ${failed[*]:-none}"
if [ "${#ran[@]}" -eq 0 ] && [ "${#failed[@]}" -eq 0 ]; then
    if [ "${REDLEASE_VERSIONS_ALLOW_NONE:-0}" = "1" ]; then
        log "no Python version found: nothing to run (allowed)"
        exit 0
    fi
    log "no Python version ran: failure"
    exit 1
fi
[ "${#failed[@]}" -eq 0 ]
