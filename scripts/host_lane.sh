#!/usr/bin/env bash
# The host lane: the tests marked `hosts` (pack load, nodes, workflows, bad inputs, frontend) against other ComfyUI
# versions, each beside the pinned one.
#   scripts/host_lane.sh                               # every comfyui-VERSION.tar.gz in ../shared/hosts
#   scripts/host_lane.sh /path/to/ComfyUI [more ...]   # your own ComfyUI folders (or .tar.gz snapshots)
#   scripts/host_lane.sh /path/to/ComfyUI -- -k osasis # arguments after -- go to pytest
# Each host gets its own state folder, .stylesmith/hosts/NAME, with a venv that overlays the pinned one (only the
# host's own requirements are installed there), its own base directory and tiny models built on that host.
# A ComfyUI folder you give is used in place, never changed. Exits non-zero if any host fails, after running all.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${STYLESMITH_HOME:-$ROOT/.stylesmith}"
say() { printf '[host lane] %s\n' "$*" >&2; }

hosts=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do hosts+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
if [ ${#hosts[@]} -eq 0 ]; then
  shopt -s nullglob
  hosts=("$ROOT"/../shared/hosts/comfyui-*.tar.gz)
  shopt -u nullglob
  if [ ${#hosts[@]} -eq 0 ]; then
    say "no ComfyUI snapshots (comfyui-VERSION.tar.gz) in $ROOT/../shared/hosts and none given: nothing to run"
    exit 0
  fi
fi

# A snapshot is unpacked once into STATE/hosts/NAME/ComfyUI (again when the archive changes).
unpack() {
  local archive="$1" home="$2" sha
  sha="$(sha256sum "$archive" | cut -d' ' -f1)"
  if [ "$(cat "$home/ComfyUI/.stylesmith-host" 2>/dev/null)" != "$sha" ]; then
    say "unpacking $archive"
    rm -rf "$home/ComfyUI" "$home/unpacked"
    mkdir -p "$home/unpacked"
    tar -xzf "$archive" -C "$home/unpacked"
    mv "$home/unpacked"/* "$home/ComfyUI"
    rm -rf "$home/unpacked"
    echo "$sha" > "$home/ComfyUI/.stylesmith-host"
  fi
}

failed=()
for host in "${hosts[@]}"; do
  if [ -f "$host" ]; then
    name="$(basename "$host" .tar.gz)"
    home="$STATE/hosts/$name"
    unpack "$host" "$home"
    comfy="$home/ComfyUI"
  else
    comfy="$(cd "$host" && pwd)"
    name="$(basename "$comfy")-$(printf '%s' "$comfy" | sha256sum | cut -c1-8)"
    home="$STATE/hosts/$name"
  fi
  started=$SECONDS
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
