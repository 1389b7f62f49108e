#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite. Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
STATE="${STYLESMITH_HOME:-$ROOT/.stylesmith}"
cd "$ROOT"
exec "$STATE/venv/bin/python" -m pytest "$@"
