#!/usr/bin/env bash
# The GPU check: the `gpu` test tier and the benchmarks on a lent CUDA machine that has PyTorch but neither
# ComfyUI nor the network (this workplace's device machines: Python 3.12, torch 2.11.0+cu130).
#
#   bash scripts/gpu-check.sh prepare   here: copies the host (without .git and the tokenizers the pack never
#                                       uses) into .device/ComfyUI, downloads the wheels the host needs and that
#                                       machine lacks (av, torchsde, trampoline, kornia, kornia-rs) into .whl/,
#                                       and keeps both out of git (.git/info/exclude); about 50 MB in all
#   bash scripts/gpu-check.sh run       there (carry .device and .whl): builds the tiny zoo, runs the gpu tests,
#                                       then bench/p2p.py and bench/multiview.py on CUDA; results under $OUT
#                                       (or ./gpu-check-out)
set -o pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
HOST="${COMFYUI_PATH:-$HOME/.cache/stepwise/ComfyUI}"
WHEELS="av==18.1.0 torchsde==0.2.6 trampoline==0.1.2 kornia==0.9.0 kornia-rs==0.2.0"

case "${1:-}" in
prepare)
  [ -f "$HOST/comfy/sd.py" ] || { echo "gpu-check: no ComfyUI at $HOST; run make host" >&2; exit 1; }
  mkdir -p .git/info .device/ComfyUI .whl
  for p in /.device/ /.whl/; do grep -qx "$p" .git/info/exclude 2>/dev/null || echo "$p" >> .git/info/exclude; done
  (cd "$HOST" && tar cf - --exclude=.git --exclude=custom_nodes/stepwise .) | (cd .device/ComfyUI && tar xf -)
  for d in qwen25_tokenizer t5_tokenizer t5_pile_tokenizer hydit_clip_tokenizer ace_lyrics_tokenizer; do
    rm -rf ".device/ComfyUI/comfy/text_encoders/$d"
  done
  # shellcheck disable=SC2086
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl $WHEELS
  du -sh .device .whl
  ;;
run)
  OUT="${OUT:-$REPO/gpu-check-out}"
  mkdir -p "$OUT"
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
  export PYTHONPATH=/tmp/site COMFYUI_PATH="$REPO/.device/ComfyUI" STEPWISE_ZOO=/tmp/zoo PYTHONUNBUFFERED=1
  nvidia-smi -L
  python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
  start=$(date +%s)
  python3 dev/build_zoo.py --out /tmp/zoo 2>&1 | grep -E "built|rror" | tee "$OUT/zoo.log"
  python3 -m pytest -m gpu --timeout 600 -p no:cacheprovider -ra tests/host/test_gpu.py 2>&1 | tee "$OUT/test-gpu.log"
  echo "tests done at $(( $(date +%s) - start )) s"
  python3 bench/p2p.py --repeats 3 --out "$OUT/p2p-cuda.json" 2>&1 | tail -12 | tee "$OUT/bench-p2p.log"
  python3 bench/multiview.py --repeats 3 --out "$OUT/multiview-cuda.json" 2>&1 | tail -12 | tee "$OUT/bench-multiview.log"
  echo "all done at $(( $(date +%s) - start )) s"
  ;;
*)
  echo "usage: bash scripts/gpu-check.sh prepare|run" >&2
  exit 2
  ;;
esac
