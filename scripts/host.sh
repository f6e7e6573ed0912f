#!/usr/bin/env bash
# Put the pinned ComfyUI host in place, build its Python environment, and link the pack into it.
#
#   COMFYUI_PATH    where the host lives            (default ~/.cache/stepwise/ComfyUI)
#   COMFYUI_SOURCE  git URL or local git directory  (default https://github.com/comfyanonymous/ComfyUI)
#   STEPWISE_VENV   the virtual environment         (default .venv in the repository)
#   PYTHON          interpreter for a new venv      (default python3)
#
# Idempotent: a host already at the pinned commit is not fetched again, and the environment is reinstalled
# (from host.lock, exact versions and hashes) only when the lock changed, so later runs need no network.
set -euo pipefail

PINNED=a125cd84b054a57729b5eecab930ca9408719832
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HOST="${COMFYUI_PATH:-$HOME/.cache/stepwise/ComfyUI}"
SOURCE="${COMFYUI_SOURCE:-https://github.com/comfyanonymous/ComfyUI}"
VENV="${STEPWISE_VENV:-$REPO/.venv}"
PYTHON="${PYTHON:-python3}"

say() { printf 'host: %s\n' "$*"; }
die() { printf 'host: error: %s\n' "$*" >&2; exit 1; }

needed_files=(main.py comfy/sd.py comfy/sd1_tokenizer/vocab.json comfy/sd1_tokenizer/merges.txt requirements.txt)

check_files() {
  local f missing=()
  for f in "${needed_files[@]}"; do [ -f "$HOST/$f" ] || missing+=("$f"); done
  [ ${#missing[@]} -eq 0 ] || die "the host at $HOST lacks ${missing[*]}"
}

checkout_pinned() {
  # A snapshot clone may lack a few large blobs the pack never uses (e.g. other models' tokenizers): git then
  # writes every other file and reports the rest; those are listed and the files the pack needs are checked.
  local err
  if ! err=$(git -C "$HOST" -c advice.detachedHead=false checkout -q --force "$PINNED" 2>&1); then
    [ "$(git -C "$HOST" rev-parse HEAD 2>/dev/null)" = "$PINNED" ] || die "could not check out $PINNED in $HOST: $err"
  fi
  local absent
  absent=$(git -C "$HOST" ls-files --deleted | tr '\n' ' ')
  [ -z "$absent" ] || say "warning: the source lacks these files of $PINNED (not used by Stepwise): $absent"
}

# --- 1. the host source at the pinned commit ---
if [ -d "$HOST/.git" ]; then
  head=$(git -C "$HOST" rev-parse HEAD 2>/dev/null || true)
  if [ "$head" != "$PINNED" ]; then
    if [ -n "$(git -C "$HOST" status --porcelain --untracked-files=no 2>/dev/null | grep -v '^ D ' || true)" ]; then
      die "$HOST is at ${head:0:12} with local changes; commit or stash them, or set COMFYUI_PATH to another folder"
    fi
    if ! git -C "$HOST" cat-file -e "$PINNED^{commit}" 2>/dev/null; then
      say "fetching $PINNED from $SOURCE"
      git -C "$HOST" fetch -q "$SOURCE" "$PINNED" 2>/dev/null || git -C "$HOST" fetch -q "$SOURCE" \
        || die "cannot fetch $PINNED from $SOURCE; set COMFYUI_SOURCE to a git URL or local git directory that has it"
    fi
    checkout_pinned
    say "moved $HOST to $PINNED"
  fi
elif [ -f "$HOST/main.py" ]; then
  say "warning: $HOST is not a git checkout; using it as it is (Stepwise is tested against ComfyUI $PINNED)"
else
  [ ! -e "$HOST" ] || [ -z "$(ls -A "$HOST" 2>/dev/null)" ] \
    || die "$HOST exists but holds no ComfyUI; remove it or set COMFYUI_PATH to a ComfyUI folder"
  say "cloning ComfyUI from $SOURCE into $HOST"
  mkdir -p "$(dirname "$HOST")"
  git clone -q --no-checkout "$SOURCE" "$HOST" 2>/dev/null || {
    rm -rf "$HOST"
    die "cannot clone $SOURCE. Set COMFYUI_SOURCE to a reachable git URL or a local git directory holding \
commit $PINNED, or COMFYUI_PATH to an existing ComfyUI checkout"
  }
  git -C "$HOST" cat-file -e "$PINNED^{commit}" 2>/dev/null || git -C "$HOST" fetch -q origin "$PINNED" 2>/dev/null \
    || { rm -rf "$HOST"; die "$SOURCE does not have commit $PINNED; point COMFYUI_SOURCE at one that does"; }
  checkout_pinned
fi
check_files
say "ComfyUI at $HOST ($(git -C "$HOST" rev-parse --short HEAD 2>/dev/null || echo 'not a git checkout'))"

# --- 2. the Python environment, exactly as host.lock says ---
# shellcheck source=lock-inputs.sh
. "$REPO/scripts/lock-inputs.sh"
LOCK="$REPO/host.lock"
[ -f "$LOCK" ] || die "$LOCK is missing; run make lock"
work=$(mktemp -d)
inputs=$(lock_inputs "$work") || { rm -rf "$work"; die "cannot read the lock's inputs"; }
rm -rf "$work"
grep -qx "# inputs-sha256: $inputs" "$LOCK" || die "host.lock was made from other inputs than today's \
(ComfyUI's requirements.txt, pyproject dependencies, host-requirements.txt, host-constraints.txt); run make lock"
stamp_hash=$(sha256sum "$LOCK" | cut -c1-16)
stamp="$VENV/.stepwise-host-$stamp_hash"
if [ -f "$stamp" ] && "$VENV/bin/python" -c 'import torch, torchvision' 2>/dev/null; then
  say "environment $VENV is current (host.lock $stamp_hash)"
else
  if [ -x "$VENV/bin/python" ] && ls "$VENV"/.stepwise-host-* >/dev/null 2>&1; then
    # made by an earlier `make host` from another lock: start afresh so nothing outside the lock stays behind
    say "host.lock changed: recreating $VENV"
    rm -rf "$VENV"
  elif [ -x "$VENV/bin/python" ]; then
    say "warning: installing host.lock into $VENV, which this script did not create; packages outside the lock stay"
  fi
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating virtual environment $VENV"
    "$PYTHON" -m venv "$VENV" || die "cannot create a virtual environment with $PYTHON (set PYTHON to a Python >= 3.10)"
  fi
  say "installing host.lock (ComfyUI's requirements, the pack's, the test tools; exact versions and hashes)"
  "$VENV/bin/python" -m pip install -q --require-hashes --no-deps -r "$LOCK" \
    || die "pip could not install host.lock"
  "$VENV/bin/python" -m pip check >/dev/null || die "the installed environment is inconsistent: $("$VENV/bin/python" -m pip check)"
  touch "$stamp"
fi

# --- 3. a browser for the frontend tests: the system Chromium ---
if [ -n "${STEPWISE_CHROMIUM:-}" ]; then
  say "Chromium for the frontend tests: $STEPWISE_CHROMIUM"
elif command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
  say "Chromium for the frontend tests: $(command -v chromium || command -v chromium-browser)"
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  say "installing Chromium for the frontend tests (apt-get install chromium)"
  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; } >/dev/null 2>&1 \
    || say "warning: apt-get could not install chromium; the frontend tests will be skipped (outside CI)"
else
  say "warning: no Chromium; install it (e.g. apt-get install chromium) or set STEPWISE_CHROMIUM for the frontend tests"
fi

# --- 4. the pack in the host's custom_nodes ---
link="$HOST/custom_nodes/stepwise"
if [ -L "$link" ] || [ ! -e "$link" ]; then
  ln -sfn "$REPO" "$link"
  say "linked $link -> $REPO"
elif [ "$(cd "$link" && pwd -P)" != "$(cd "$REPO" && pwd -P)" ]; then
  say "warning: $link is a separate copy of the pack, left as it is"
fi
say "ready: $VENV/bin/python with ComfyUI $PINNED"
