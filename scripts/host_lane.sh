#!/usr/bin/env bash
# The host lane: the tests marked `hosts` (pack load, nodes, workflows, bad inputs, frontend) against other ComfyUI
# versions, each beside the pinned one (scripts/hosts.sh says where each comes from).
#   scripts/host_lane.sh                               # ComfyUI 0.3.75 (PyPI wheel) and every other
#                                                      # comfyui-VERSION.tar.gz in ../shared/hosts (0.3.64)
#   scripts/host_lane.sh /path/to/ComfyUI [more ...]   # your own ComfyUI folders (or .tar.gz snapshots)
#   scripts/host_lane.sh /path/to/ComfyUI -- -k osasis # arguments after -- go to pytest
# Each host gets its own state folder, .stylesmith/hosts/NAME, with a venv that overlays the pinned one (only the
# host's own requirements are installed there), its own base directory, and the pinned host's tiny models (hard links: see share_tiny_models).
# A ComfyUI folder you give is used in place, never changed. Exits non-zero if any host fails, after running all.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${STYLESMITH_HOME:-$ROOT/.stylesmith}"
say() { printf '[host lane] %s\n' "$*" >&2; }
# shellcheck source=hosts.sh
source "$ROOT/scripts/hosts.sh"
WHEEL_HOST="wheel:$WHEEL_HOST_VERSION"

hosts=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do hosts+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
if [ ${#hosts[@]} -eq 0 ]; then
  hosts=("$WHEEL_HOST")
  shopt -s nullglob
  for archive in "$SHARED_HOSTS"/comfyui-*.tar.gz; do
    [ "$(basename "$archive")" = "comfyui-$PINNED_HOST_VERSION.tar.gz" ] || hosts+=("$archive")
  done
  shopt -u nullglob
  [ ${#hosts[@]} -gt 1 ] || say "no other ComfyUI snapshots (comfyui-VERSION.tar.gz) in $SHARED_HOSTS: the lane runs $WHEEL_HOST_VERSION only"
fi

# Each tiny model is built once per run: a host's base starts with hard links to the pinned host's files, and
# devkit.tiny_models skips every file whose recipe stamp matches (the recipes do not depend on the host). The lane's
# tests still load each file through that host's own detection. Hard links cost no disk; where the folders are on
# different file systems the host builds its own.
share_tiny_models() {
  local from="$1" to="$2"
  [ -d "$from" ] && [ ! -e "$to" ] || return 0
  mkdir -p "$(dirname "$to")"
  cp -al "$from" "$to" 2>/dev/null || { rm -rf "$to"; say "cannot hard-link $from: building this host's tiny models"; }
}

failed=()
for host in "${hosts[@]}"; do
  if [ "$host" = "$WHEEL_HOST" ]; then
    name="comfyui-$WHEEL_HOST_VERSION"
    home="$STATE/hosts/$name"
    comfy="$home/ComfyUI"
    mkdir -p "$home"
    wheel_host "$comfy" "$STATE/venv/bin/python"
  elif [ -f "$host" ]; then
    name="$(basename "$host" .tar.gz)"
    home="$STATE/hosts/$name"
    comfy="$home/ComfyUI"
    unpack_host "$host" "$comfy"
  else
    comfy="$(cd "$host" && pwd)"
    name="$(basename "$comfy")-$(printf '%s' "$comfy" | sha256sum | cut -c1-8)"
    home="$STATE/hosts/$name"
  fi
  started=$SECONDS
  share_tiny_models "$STATE/base/models" "$home/base/models"
  STYLESMITH_HOME="$home" COMFYUI_PATH="$comfy" STYLESMITH_BASE_VENV="$STATE/venv" bash "$ROOT/scripts/setup.sh"
  say "$name: running the tests marked 'hosts' on $comfy"
  if (cd "$ROOT" && STYLESMITH_HOME="$home" COMFYUI_PATH="$comfy" "$home/venv/bin/python" -m pytest -m hosts "$@"); then
    say "$name: passed in $((SECONDS - started)) s"
  else
    say "$name: FAILED after $((SECONDS - started)) s"
    failed+=("$name")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  say "failed on ${failed[*]}"
  exit 1
fi
