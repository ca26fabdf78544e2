#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the leader-election demo (`redlease demo`):
#   bash scripts/demo.sh                          # starts its own throwaway redis-server
#   bash scripts/demo.sh --url redis://host:6379/0 [--nodes 5]
#   bash scripts/demo.sh redis://host:6379/0 [--nodes 5]   # same (URL first)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

bash "$ROOT/scripts/setup.sh"

args=("$@")
# Compatibility with the old examples/demo.py command line: a URL first.
if [ "${#args[@]}" -gt 0 ]; then
    case "${args[0]}" in
        redis://*|rediss://*|unix://*) args=(--url "${args[@]}") ;;
    esac
fi

echo "[demo] running: .venv/bin/redlease demo ${args[*]:-}" | sed -E 's#(://[^:/@]*:)[^@]*@#\1***@#g'
exec "$ROOT/.venv/bin/redlease" demo "${args[@]}"
