#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the benchmark (not a test):
#   bash scripts/bench.sh [bench/bench_core.py args, e.g. --url redis://... --cycles 2000]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

bash "$ROOT/scripts/setup.sh"

echo "[bench] running: .venv/bin/python bench/bench_core.py $*"
exec "$ROOT/.venv/bin/python" "$ROOT/bench/bench_core.py" "$@"
