# Stepwise: make host | make check | make test | make demo   (see README.md)
#
# COMFYUI_PATH, COMFYUI_SOURCE and STEPWISE_VENV (see scripts/host.sh) may be set in the environment or on
# the command line, e.g. `make host COMFYUI_SOURCE=/path/to/ComfyUI/.git`.

export COMFYUI_PATH COMFYUI_SOURCE STEPWISE_VENV STEPWISE_ZOO
VENV := $(or $(STEPWISE_VENV),$(CURDIR)/.venv)
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: help host lock check lint zoo zoo-tiny test test-fast test-gpu demo serve workflows screenshots bench bench-full eval eval-world clean world-models tables

help:
	@echo "make host       put the pinned ComfyUI in place, install its venv from host.lock, link the pack"
	@echo "make lock       regenerate host.lock (exact versions and hashes) from ComfyUI's requirements, the pack's"
	@echo "                dependencies, host-requirements.txt and host-constraints.txt"
	@echo "make check      the host-free tier (tests/unit): kernels and pure models, under a minute, no ComfyUI"
	@echo "make lint       ruff (configured in pyproject.toml)"
	@echo "make test       lint and every tier except gpu tests (unit, in-process host + zoo, real server + browser)"
	@echo "make test-gpu   the gpu-marked tests (needs CUDA)"
	@echo "make demo       train the demo models (<= 10 min on 2 cores), run every example workflow through a real"
	@echo "                server -> demo-output/ (images, contact_sheet.png, report.md)"
	@echo "make serve      ComfyUI with the pack and the demo models on http://127.0.0.1:8188"
	@echo "make zoo        build the model zoo (tiny + full-size SD1.5 architecture) into ~/.cache/stepwise/zoo"
	@echo "make bench      benchmarks (bench/results/*.json); not part of make test"
	@echo "make bench-full Prompt-to-Prompt, Visual Anagram, Hybrid Noise on the full-size SD1.5 architecture at 64x64"
	@echo "                latents (bench/results/*_full.json; about 40 quiet minutes on 2 CPU cores)"
	@echo "make eval       quality experiments (eval/results/*.json); not part of make test"
	@echo "make world-models  the next part (<= 110 min) of the world text-to-image models' recipe; run again until it"
	@echo "                says complete (WORLD_ARGS='--device cuda' on a GPU; '--ship' writes each finished seed to"
	@echo "                dev/world_models/, and a shipped seed is never trained again)"
	@echo "make eval-world every measurement of the shipped world text-to-image models (dev/world_models/, both"
	@echo "                seeds): text-to-image, the edits, the illusions, the levers, the estimator; then make tables"
	@echo "make tables     rebuild the README's measured tables from eval/results/*.json (after an experiment)"
	@echo "make screenshots  run every example workflow in the web UI (headless Chromium) -> docs/screenshots/,"
	@echo "                  template thumbnails example_workflows/*.jpg"
	@echo "make workflows  regenerate example_workflows/ (UI format) from dev/workflows/ (API format)"

host:
	@bash scripts/host.sh

lock:
	@bash scripts/lock.sh

# The host-free tier needs only the virtual environment: ComfyUI is made unreachable on purpose.
check:
	COMFYUI_PATH=/nonexistent/ComfyUI $(PY) -m pytest -m "not gpu" --timeout 300 tests/unit $(PYTEST_ARGS)

lint:
	$(PY) -m ruff check .

zoo-tiny: host
	@$(PY) dev/build_zoo.py

zoo: host
	@$(PY) dev/build_zoo.py --full

test: zoo lint check
	$(PY) -m pytest -m "not gpu" --timeout 1200 tests/host tests/server $(PYTEST_ARGS)

test-fast: zoo-tiny check
	$(PY) -m pytest -m "not gpu and not slow" --timeout 1200 tests/host tests/server $(PYTEST_ARGS)

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

world-models: host
	$(PY) scripts/world_models.py $(WORLD_ARGS)

# The shipped world models, one --checkpoint per training seed (the experiments measure every seed given).
WORLD_CHECKPOINTS = $(patsubst %,--checkpoint %,$(sort $(wildcard dev/world_models/stepwise-world-s*.safetensors)))

# After the shipped world models change: measure them again with every world experiment's recorded settings (each
# report is rewritten; world_levers.py adds its rows beside the earlier levers), then rebuild the README tables.
eval-world: zoo-tiny
	$(PY) eval/world_t2i.py $(WORLD_CHECKPOINTS)
	$(PY) eval/world_p2p.py $(WORLD_CHECKPOINTS)
	$(PY) eval/world_p2p.py $(WORLD_CHECKPOINTS) --cross 0.4 --out eval/results/world_p2p_cross_replace_0.4.json
	$(PY) eval/world_p2p.py $(WORLD_CHECKPOINTS) --self 0.0 --out eval/results/world_p2p_self_replace_0.0.json
	$(PY) eval/world_p2p_modes.py $(WORLD_CHECKPOINTS)
	$(PY) eval/world_p2p_modes.py $(WORLD_CHECKPOINTS) --map-scale 1/4 --out eval/results/world_p2p_modes_map_scale_1-4.json
	$(PY) eval/world_p2p_modes.py $(WORLD_CHECKPOINTS) --blend-only --blend-threshold 0.7 --out eval/results/world_p2p_blend_threshold_0.7.json
	$(PY) eval/world_views.py $(WORLD_CHECKPOINTS)
	$(PY) eval/world_levers.py --add $(WORLD_CHECKPOINTS)
	$(PY) eval/artifact_quality.py --world scenes --train-images 1024
	$(PY) scripts/tables.py

tables:
	$(PY) scripts/tables.py

clean:
	rm -rf demo-output .pytest_cache

bench: zoo-tiny
	$(PY) bench/multiview.py
	$(PY) bench/p2p.py

bench-full: zoo
	$(PY) bench/multiview.py --models full --latent 64 --steps 1 --repeats 2 --cases anagram_2_views anagram_3_views hybrid_2_bands hybrid_3_bands
	$(PY) bench/p2p.py --models full --latent 64 --steps 1 --long 3 --repeats 2 --cases replace refine_reweight_blend --unchunked

eval: zoo-tiny
	$(PY) eval/refiner_quality.py
	$(PY) eval/refiner_quality.py --world scenes --train-seeds 7 8
	$(PY) eval/pose_quality.py
	$(PY) eval/artifact_quality.py
	$(PY) eval/artifact_quality.py --world scenes --train-images 1024
