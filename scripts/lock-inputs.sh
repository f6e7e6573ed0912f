# Sourced by scripts/lock.sh and scripts/host.sh: the inputs of the host environment's lock.
#
#   lock_inputs DIR   writes into DIR: comfyui-requirements.txt (ComfyUI's requirements.txt at the pinned commit),
#                     pack-requirements.txt (the pack's pyproject dependencies), and prints the sha256 of all
#                     inputs (those two, host-requirements.txt, host-constraints.txt) as recorded in host.lock.
# Needs REPO, HOST and PINNED set, and the host's git checkout (the first step of `make host`).

lock_inputs() {
  local dir="$1"
  git -C "$HOST" show "$PINNED:requirements.txt" > "$dir/comfyui-requirements.txt" 2>/dev/null \
    || cp "$HOST/requirements.txt" "$dir/comfyui-requirements.txt" 2>/dev/null \
    || { printf 'lock: error: no ComfyUI requirements.txt at %s; run make host first\n' "$HOST" >&2; return 1; }
  "${PYTHON:-python3}" -c 'import sys, tomllib; print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]))' \
    "$REPO/pyproject.toml" > "$dir/pack-requirements.txt"
  cat "$dir/comfyui-requirements.txt" "$dir/pack-requirements.txt" "$REPO/host-requirements.txt" \
    "$REPO/host-constraints.txt" | sha256sum | cut -c1-64
}
