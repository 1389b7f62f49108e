#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite on the pinned ComfyUI, then the host lane
# (scripts/host_lane.sh: the `hosts` tests on every other ComfyUI snapshot in ../shared/hosts).
# Extra arguments go to pytest and run on the pinned host only; STYLESMITH_HOST_LANE=0 skips the lane.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
STATE="${STYLESMITH_HOME:-$ROOT/.stylesmith}"
cd "$ROOT"
status=0
"$STATE/venv/bin/python" -m pytest "$@" || status=$?
if [ $# -eq 0 ] && [ "${STYLESMITH_HOST_LANE:-1}" != 0 ]; then
  bash "$ROOT/scripts/host_lane.sh" || status=$?
fi
exit $status
