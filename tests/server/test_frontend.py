"""Every example workflow in the host's real web UI: picked from the pack's templates, queued with Run, images shown.

The frontend is ComfyUI's own (the pinned host's comfyui-frontend-package), in headless system Chromium driven by
Playwright. For each example workflow: its card in the template browser shows its title and description whole, the
graph holds its Note, no node types are missing, no dialog is left open, the prompt the frontend builds is accepted
without node errors and is exactly the workflow's API twin, it finishes with images that the canvas shows (small
results also upscaled), and a screenshot is saved.
"""

import glob
import json
import os
import urllib.parse

import pytest
from PIL import Image

from stepwise_dev import frontend, paths, templates, workflow

pytestmark = [pytest.mark.server, pytest.mark.frontend]

NAMES = templates.stems()  # the API twins' stems; the UI files are named by their titles
SMALL = 128  # results below this many pixels on a side are hard to see on the canvas: they get an upscaled preview


@pytest.fixture(scope="module")
def ui(server):
    why = frontend.unavailable()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"the frontend tests must run in CI: {why}")
        pytest.skip(why)
    with frontend.Frontend(server) as fe:
        yield fe


def test_templates_list_every_example_workflow_by_title_with_its_thumbnail(server):
    on_disk = sorted(os.path.basename(p)[: -len(".json")] for p in glob.glob(os.path.join(paths.EXAMPLE_WORKFLOWS, "*.json")))
    titles = sorted(templates.title(n) for n in NAMES)
    assert on_disk == titles
    assert sorted(server.get_json("/api/workflow_templates")["stepwise"]) == titles
    for title in titles:
        jpeg = server.get_bytes(f"/api/workflow_templates/stepwise/{urllib.parse.quote(title)}.jpg")
        assert jpeg[:3] == b"\xff\xd8\xff", f"{title}.jpg is not a JPEG"


def _upscaled_previews(server, twin: dict, entry: dict) -> list[str]:
    """Saved images smaller than SMALL px without a PreviewImage of the same image upscaled to at least 2 x SMALL."""
    missing = []
    for nid, out in entry["outputs"].items():
        node = twin[nid]
        if node["class_type"] != "SaveImage" or not out.get("images"):
            continue
        if min(server.output_images(entry, nid)[0].shape[:2]) >= SMALL:
            continue
        source = node["inputs"]["images"]
        scalers = [k for k, n in twin.items() if n["class_type"] in ("ImageScaleBy", "ImageScale")
                   and n["inputs"]["image"] == source and n["inputs"]["upscale_method"] == "nearest-exact"]
        previews = [k for k, n in twin.items() if n["class_type"] == "PreviewImage"
                    and n["inputs"]["images"][0] in scalers and k in entry["outputs"]]
        if not any(min(server.output_images(entry, k)[0].shape[:2]) >= 2 * SMALL for k in previews):
            missing.append(f"{nid} ({node['_meta']['title']})")
    return missing


@pytest.mark.parametrize("name", NAMES)
def test_example_workflow_runs_in_the_web_ui(server, ui, name, tmp_path_factory):
    title = templates.title(name)
    shot = os.path.join(tmp_path_factory.mktemp("screenshots"), name + ".png")
    run = ui.run_template(title, screenshot=shot)

    # The card explains itself: a real title (not the stem), and the pinned frontend's description, both whole.
    assert run.card["title"] == title != name and run.card["description"] == templates.description(name), run.card
    assert not run.card["title_cut"] and not run.card["description_cut"], f"{name}: the card cuts its text: {run.card}"
    assert run.notes == [templates.note(name)], f"{name}: the graph should hold exactly its Note"

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
    missing = _upscaled_previews(server, twin, run.entry)
    assert not missing, f"{name}: small results shown only at their own size: {missing}"
    with Image.open(shot) as png:
        assert 300 < png.width <= ui.viewport["width"] and 200 < png.height <= ui.viewport["height"]
        assert png.convert("L").getextrema()[1] > 100  # the canvas was drawn, not a blank page

    for nid, node in twin.items():
        if node["class_type"] == "StepwiseArtifactEarlyReject":
            _early_reject_shown(run, twin, nid)
        if node["class_type"] == "StepwisePromptToPromptAttn":  # both prompt boxes carry their names on the canvas
            widgets = {w[0]: w for w in run.widgets[nid]}
            for box in ("source", "target"):
                assert widgets[box][1] == "text" and widgets[box][3] == node["inputs"][box], widgets[box]
        if node["class_type"] == "StepwiseVisualAnagram":  # no view shown for a prompt that is not connected
            values = {w[0]: w[3] for w in run.widgets[nid]}
            for i in (3, 4):
                if f"positive_{i}" not in node["inputs"]:
                    assert values[f"view_{i}"] == "unused", values


def _early_reject_shown(run, twin: dict, reject: str) -> None:
    """The template shows which seed Early Reject kept and why: its report and its scores in Preview Any boxes."""
    shown = {twin[k]["inputs"]["source"][1]: text for k, text in run.texts.items()
             if twin[k]["class_type"] == "PreviewAny" and twin[k]["inputs"]["source"][0] == reject}
    assert set(shown) == {1, 3}, f"the template should show the scores (output 1) and the report (output 3): {run.texts}"
    report = json.loads(shown[3])
    seeds = twin[reject]["inputs"]["seeds"]
    assert len(report["seeds"]) == seeds and sum(s["kept"] for s in report["seeds"]) == twin[reject]["inputs"]["keep"]
    kept = min(report["seeds"], key=lambda s: s["score"])
    assert kept["kept"] and abs(float(shown[1]) - kept["score"]) < 1e-4, (shown, report)


def test_new_nodes_show_labelled_prompts_and_no_unused_views(server, ui):
    """Nodes added fresh in the UI (no saved values): Prompt-to-Prompt's prompts are labelled text widgets, Visual
    Anagram's views 3 and 4 say unused."""
    page = ui.open()
    try:
        widgets = page.evaluate("""types => Object.fromEntries(types.map(t => {
            const n = LiteGraph.createNode(t); window.app.graph.add(n);
            return [t, n.widgets.map(w => [w.name, w.type, w.label ?? null, w.value])];
        }))""", ["StepwisePromptToPromptAttn", "StepwiseVisualAnagram"])
    finally:
        page.context.close()
    p2p = {w[0]: w for w in widgets["StepwisePromptToPromptAttn"]}
    assert p2p["source"][1] == p2p["target"][1] == "text", p2p  # drawn with their names, unlike a multiline box
    anagram = {w[0]: w[3] for w in widgets["StepwiseVisualAnagram"]}
    assert anagram["view_1"] == "identity" and anagram["view_2"] == "flip_ud", anagram
    assert anagram["view_3"] == anagram["view_4"] == "unused", anagram
