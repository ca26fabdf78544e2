#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the leader-election demo:
#   bash scripts/demo.sh                 # starts its own throwaway redis-server
#   bash scripts/demo.sh redis://host:6379/0 [--nodes 5]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

bash "$ROOT/scripts/setup.sh"

echo "[demo] running: .venv/bin/python examples/demo.py $*"
exec "$ROOT/.venv/bin/python" "$ROOT/examples/demo.py" "$@"
