#!/usr/bin/env bash
# Idempotent set-up of everything StyleSmith needs on a fresh machine:
#   1. a virtual environment with torch/torchvision (the pair that runs on CPU here); with
#      $STYLESMITH_BASE_VENV, an overlay of that venv instead (it sees the base's packages, torch among
#      them, and installs only what differs: how the host lane puts several ComfyUI versions beside each other),
#   2. a ComfyUI host: $COMFYUI_PATH if set, else the pinned ComfyUI 0.33.0 (scripts/hosts.sh: from
#      ../shared/hosts/comfyui-0.33.0.tar.gz when present, else from the upstream release tag v0.33.0),
#   3. ComfyUI's requirements (without torch*) plus what that host version imports without listing it
#      (comfy_adapter/versions.py says what), and the pack's,
#   4. a ComfyUI base directory with this pack (and the harness's node pack) in custom_nodes and the tiny default
#      models (the split files of the DiT families only where the host supports the family),
#   5. Debian's chromium and chromedriver for the frontend tests (apt, when run as root or with sudo).
# A second run only checks stamps and returns in seconds.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${STYLESMITH_HOME:-$ROOT/.stylesmith}"
VENV="$STATE/venv"
PY="$VENV/bin/python"
PYTHON_BASE="${PYTHON:-python3.11}"
TORCH_PINS=(torch==2.14.1 torchvision==0.29.1)

say() { printf '[setup] %s\n' "$*" >&2; }
# pip warns once per package about this machine's absent local mirrors; keep the log readable.
pip_install() { "$PY" -m pip install -q "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }; }
stamp_matches() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }

mkdir -p "$STATE/cache"
# shellcheck source=hosts.sh
source "$ROOT/scripts/hosts.sh"

# 1. virtual environment + torch
if [ -n "${STYLESMITH_BASE_VENV:-}" ]; then
  BASE_VENV="$(cd "$STYLESMITH_BASE_VENV" && pwd)"
  if ! stamp_matches "$VENV/.torch-stamp" "overlay of $BASE_VENV"; then
    say "creating virtual environment in $VENV as an overlay of $BASE_VENV"
    rm -rf "$VENV"
    "$PYTHON_BASE" -m venv "$VENV"
    "$BASE_VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])" \
      > "$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/stylesmith-base-venv.pth"
    pip_install --upgrade pip
    echo "overlay of $BASE_VENV" > "$VENV/.torch-stamp"
  fi
elif ! stamp_matches "$VENV/.torch-stamp" "${TORCH_PINS[*]}"; then
  say "creating virtual environment in $VENV (torch takes about 80 s)"
  "$PYTHON_BASE" -m venv "$VENV"
  pip_install --upgrade pip
  pip_install "${TORCH_PINS[@]}"
  echo "${TORCH_PINS[*]}" > "$VENV/.torch-stamp"
fi

# 2. ComfyUI host
if [ -n "${COMFYUI_PATH:-}" ]; then
  COMFY="$(cd "$COMFYUI_PATH" && pwd)"
  [ -f "$COMFY/main.py" ] && [ -d "$COMFY/comfy" ] || { say "COMFYUI_PATH=$COMFYUI_PATH is not a ComfyUI folder (no main.py and comfy/)"; exit 2; }
  say "using the ComfyUI at $COMFY"
else
  COMFY="$STATE/ComfyUI"
  archive="$(pinned_host_archive)"
  unpack_host "$archive" "$COMFY"
  check_host_version "$COMFY" "$PINNED_HOST_VERSION"
fi
echo "$COMFY" > "$STATE/comfyui-path"

# 3. Python requirements: ComfyUI's without torch/torchvision/torchaudio (the venv owns torch), + what this
#    host version imports without listing it, + the pack's, + the test tools.
reqs="$STATE/host-requirements.txt"
no_deps="$STATE/host-requirements-no-deps.txt"
grep -viE '^\s*(torch|torchvision|torchaudio)\s*$' "$COMFY/requirements.txt" > "$reqs"
(cd "$ROOT" && "$PY" -m comfy_adapter.versions "$COMFY" --kind with_deps) >> "$reqs"
(cd "$ROOT" && "$PY" -m comfy_adapter.versions "$COMFY" --kind no_deps) > "$no_deps"
printf '%s\n' "${TORCH_PINS[@]}" > "$STATE/torch-constraints.txt"
req_hash="$(cat "$reqs" "$no_deps" "$ROOT/requirements.txt" "$ROOT/requirements-dev.txt" "$STATE/torch-constraints.txt" | sha256sum | cut -d' ' -f1)"
if ! stamp_matches "$VENV/.requirements-stamp" "$req_hash"; then
  say "installing ComfyUI's and StyleSmith's requirements"
  pip_install -c "$STATE/torch-constraints.txt" -r "$reqs" -r "$ROOT/requirements.txt" -r "$ROOT/requirements-dev.txt"
  if [ -s "$no_deps" ]; then pip_install --no-deps -r "$no_deps"; fi
  echo "$req_hash" > "$VENV/.requirements-stamp"
fi

# 4. base directory: the pack in custom_nodes, tiny default models in models/
BASE="$STATE/base"
mkdir -p "$BASE/custom_nodes" "$BASE/input" "$BASE/output" "$BASE/user"
ln -sfn "$ROOT" "$BASE/custom_nodes/ComfyUI-StyleSmith"
# the harness's node pack: stock CLIPLoader graphs build the shrunk tiny text encoders (devkit/harness_pack)
ln -sfn "$ROOT/devkit/harness_pack" "$BASE/custom_nodes/StyleSmith-Harness"
(cd "$ROOT" && "$PY" -m devkit.tiny_models --comfyui "$COMFY" --models-dir "$BASE/models" --inputs-dir "$BASE/input")
# 5. a browser for the frontend tests: Debian's chromium + chromedriver (nothing downloaded at test time)
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  apt_get=""
  if [ "$(id -u)" = 0 ]; then apt_get="apt-get"; elif sudo -n true 2>/dev/null; then apt_get="sudo apt-get"; fi
  if [ -n "$apt_get" ] && command -v apt-get >/dev/null; then
    say "installing chromium and chromedriver (apt)"
    $apt_get update -qq
    DEBIAN_FRONTEND=noninteractive $apt_get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
  else
    say "chromium/chromedriver missing and no root: the frontend tests will fail; install chromium chromium-driver"
  fi
fi
say "ready: python=$PY comfyui=$COMFY base=$BASE"
