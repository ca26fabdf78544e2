#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the test suite:
#   bash scripts/test.sh [extra pytest args...]
# Exits with pytest's exit code; "no tests ran" (pytest exit 5) counts as failure.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

bash "$ROOT/scripts/setup.sh"

echo "[test] running: .venv/bin/python -m pytest -q tests $*"
set +e
"$ROOT/.venv/bin/python" -m pytest -q tests "$@"
rc=$?
set -e

if [ "$rc" -eq 5 ]; then
    echo "[test] ERROR: pytest collected no tests (exit 5); treating as failure" >&2
    exit 1
fi
exit "$rc"
