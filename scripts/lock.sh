#!/usr/bin/env bash
# `make lock`: regenerate host.lock, the exact host environment (every package, pinned, with its hashes) that
# `make host` installs and CI tests. Run it after changing host-requirements.txt, host-constraints.txt, the
# pack's pyproject dependencies or the pinned ComfyUI commit, and commit host.lock.
#
# Inputs: ComfyUI's requirements.txt at the pinned commit, the pack's pyproject dependencies,
# host-requirements.txt (extras and test tools), host-constraints.txt. Resolver: uv (pinned below; installed into
# ~/.cache/stepwise/lock-tools by this script), `uv pip compile --universal --generate-hashes` for Python 3.11.
set -euo pipefail
UV_VERSION=0.13.9
PINNED=a125cd84b054a57729b5eecab930ca9408719832
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HOST="${COMFYUI_PATH:-$HOME/.cache/stepwise/ComfyUI}"
TOOLS="${STEPWISE_LOCK_TOOLS:-$HOME/.cache/stepwise/lock-tools}"
PYTHON="${PYTHON:-python3}"
# shellcheck source=lock-inputs.sh
. "$REPO/scripts/lock-inputs.sh"

if ! "$TOOLS/bin/uv" --version 2>/dev/null | grep -q "^uv $UV_VERSION"; then
  echo "lock: installing uv $UV_VERSION into $TOOLS"
  "$PYTHON" -m venv "$TOOLS"
  "$TOOLS/bin/python" -m pip install -q "uv==$UV_VERSION"
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
inputs=$(lock_inputs "$work")
"$TOOLS/bin/uv" pip compile --quiet --universal --python-version 3.11 --generate-hashes \
  --custom-compile-command "make lock" \
  -c "$REPO/host-constraints.txt" \
  "$work/comfyui-requirements.txt" "$REPO/host-requirements.txt" "$work/pack-requirements.txt" \
  -o "$work/host.lock"
{
  echo "# host.lock: the host environment of Stepwise's tests and CI (ComfyUI $PINNED), installed by \`make host\`"
  echo "# with pip --require-hashes --no-deps. Made by \`make lock\` (scripts/lock.sh); do not edit by hand."
  echo "# inputs-sha256: $inputs"
  sed -e "s#$work/##g" -e "s#$REPO/##g" "$work/host.lock"
} > "$REPO/host.lock"
echo "lock: wrote host.lock ($(grep -cE '^[A-Za-z0-9]' "$REPO/host.lock") packages)"
