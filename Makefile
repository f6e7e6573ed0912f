# Stepwise: make host | make test | make demo   (see README.md)
#
# COMFYUI_PATH, COMFYUI_SOURCE and STEPWISE_VENV (see scripts/host.sh) may be set in the environment or on
# the command line, e.g. `make host COMFYUI_SOURCE=/path/to/ComfyUI/.git`.

export COMFYUI_PATH COMFYUI_SOURCE STEPWISE_VENV STEPWISE_ZOO
VENV := $(or $(STEPWISE_VENV),$(CURDIR)/.venv)
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: help host zoo zoo-tiny test test-fast test-gpu demo serve workflows screenshots bench eval clean

help:
	@echo "make host       put the pinned ComfyUI in place, build its venv, link the pack"
	@echo "make test       the whole suite except gpu tests (real host, zoo, real server)"
	@echo "make test-gpu   the gpu-marked tests (needs CUDA)"
	@echo "make demo       train the demo models (<= 10 min on 2 cores), run every example workflow through a real"
	@echo "                server -> demo-output/ (images, contact_sheet.png, report.md)"
	@echo "make serve      ComfyUI with the pack and the demo models on http://127.0.0.1:8188"
	@echo "make zoo        build the model zoo (tiny + full-size SD1.5 architecture) into ~/.cache/stepwise/zoo"
	@echo "make bench      benchmarks (bench/results/*.json); not part of make test"
	@echo "make eval       quality experiments (eval/results/*.json); not part of make test"
	@echo "make screenshots  run every example workflow in the web UI (headless Chromium) -> docs/screenshots/,"
	@echo "                  template thumbnails example_workflows/*.jpg"
	@echo "make workflows  regenerate example_workflows/ (UI format) from tests/workflows/ (API format)"

host:
	@bash scripts/host.sh

zoo-tiny: host
	@$(PY) tests/zoo/build.py

zoo: host
	@$(PY) tests/zoo/build.py --full

test: zoo
	$(PY) -m pytest -m "not gpu" --timeout 1200 $(PYTEST_ARGS)

test-fast: zoo-tiny
	$(PY) -m pytest -m "not gpu and not slow" --timeout 1200 $(PYTEST_ARGS)

test-gpu: zoo-tiny
	$(PY) -m pytest -m gpu --timeout 1200 $(PYTEST_ARGS)

demo: zoo-tiny
	$(PY) scripts/demo.py --out demo-output

serve: zoo-tiny
	$(PY) scripts/serve.py --out demo-output

workflows: host
	$(PY) scripts/example_workflows.py

screenshots: zoo-tiny
	$(PY) scripts/screenshots.py

clean:
	rm -rf demo-output .pytest_cache

bench: zoo-tiny
	$(PY) bench/multiview.py
	$(PY) bench/p2p.py

eval: zoo-tiny
	$(PY) eval/refiner_quality.py
	$(PY) eval/pose_quality.py
	$(PY) eval/artifact_quality.py
