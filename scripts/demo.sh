#!/usr/bin/env bash
# Set up (idempotent) and run the main job: every bundled workflow, headless in the real ComfyUI,
# on the embedded tiny models, printing where the images went.
#   scripts/demo.sh                                   # tiny default models
#   scripts/demo.sh --checkpoint /path/model.safetensors   # your SD1.x or SDXL checkpoint
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
STATE="${STYLESMITH_HOME:-$ROOT/.stylesmith}"
cd "$ROOT"
exec "$STATE/venv/bin/python" -m devkit.run_workflows "$@"
