"""Every example workflow in the host's real web UI: picked from the pack's templates, queued with Run, images shown.

The frontend is ComfyUI's own (the pinned host's comfyui-frontend-package), in headless system Chromium driven by
Playwright. For each file in example_workflows/: no missing node types, no dialog left open, the prompt the
frontend builds is accepted without node errors and is exactly the workflow's API twin, it finishes with images
that the canvas shows, and a screenshot is saved.
"""

import glob
import os

import pytest
from PIL import Image

from stepwise_dev import frontend, paths, workflow

pytestmark = [pytest.mark.server, pytest.mark.frontend]

NAMES = sorted(os.path.basename(p)[: -len(".json")] for p in glob.glob(os.path.join(paths.EXAMPLE_WORKFLOWS, "*.json")))


@pytest.fixture(scope="module")
def ui(server):
    why = frontend.unavailable()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"the frontend tests must run in CI: {why}")
        pytest.skip(why)
    with frontend.Frontend(server) as fe:
        yield fe


def test_templates_list_every_example_workflow_with_its_thumbnail(server):
    assert sorted(server.get_json("/api/workflow_templates")["stepwise"]) == NAMES
    for name in NAMES:
        jpeg = server.get_bytes(f"/api/workflow_templates/stepwise/{name}.jpg")
        assert jpeg[:3] == b"\xff\xd8\xff", f"{name}.jpg is not a JPEG"


@pytest.mark.parametrize("name", NAMES)
def test_example_workflow_runs_in_the_web_ui(server, ui, name, tmp_path_factory):
    shot = os.path.join(tmp_path_factory.mktemp("screenshots"), name + ".png")
    run = ui.run_template(name, screenshot=shot)

    info = server.object_info()
    missing = sorted({t for t in run.node_types if t not in info and t not in frontend.FRONTEND_ONLY})
    assert not missing, f"{name}: node types missing in the UI: {missing}"
    assert not run.dialogs, f"{name}: dialogs open after loading: {run.dialogs}"
    assert not [u for s, u in run.failed_requests if "/workflow_templates/stepwise/" in u], run.failed_requests

    assert run.response_status == 200 and run.response.get("node_errors") == {}, (
        f"{name}: validation refused the UI's prompt: {run.response}")
    twin = workflow.load(os.path.join(paths.WORKFLOWS_API, name + ".api.json"))
    assert workflow.strip_meta(run.prompt) == workflow.strip_meta(twin), (
        f"{name}: the UI queued a different graph than its API twin")

    status = run.entry["status"]
    assert status["status_str"] == "success" and status["completed"]
    images = server.output_images(run.entry)
    assert images and all(im.std() > 0.01 for im in images), f"{name}: blank or missing images"
    with Image.open(shot) as png:
        assert 300 < png.width <= ui.viewport["width"] and 200 < png.height <= ui.viewport["height"]
        assert png.convert("L").getextrema()[1] > 100  # the canvas was drawn, not a blank page
