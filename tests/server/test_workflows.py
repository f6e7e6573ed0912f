"""Every example workflow: the shared UI file is the same graph as its API twin, and the twin runs."""

import glob
import os

import numpy as np
import pytest

from stepwise_dev import paths, templates, workflow

pytestmark = pytest.mark.server

TWINS = sorted(glob.glob(os.path.join(paths.WORKFLOWS_API, "*.api.json")))
NAMES = [os.path.basename(p)[: -len(".api.json")] for p in TWINS]


def test_every_example_workflow_has_an_api_twin_and_back():
    """UI files are named by their titles (what the template browser shows), from dev/workflows/templates.json."""
    ui_names = sorted(os.path.basename(p)[:-5] for p in glob.glob(os.path.join(paths.EXAMPLE_WORKFLOWS, "*.json")))
    assert templates.stems() == NAMES
    assert ui_names and ui_names == sorted(templates.title(n) for n in NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_every_example_workflow_holds_its_note(name):
    notes = [n for n in workflow.load(templates.ui_path(name))["nodes"] if n["type"] == "Note"]
    assert [n["widgets_values"] for n in notes] == [[templates.note(name)]]


def test_every_stepwise_node_is_in_an_example_workflow():
    from stepwise.nodes import NODES

    used = {n["class_type"] for p in TWINS for n in workflow.load(p).values()}
    unused = sorted(n.GET_SCHEMA().node_id for n in NODES if n.GET_SCHEMA().node_id not in used)
    assert not unused, f"no example workflow shows {unused}"


@pytest.mark.parametrize("name", NAMES)
def test_ui_workflow_converts_to_its_api_twin(server, name):
    info = server.object_info()
    ui = workflow.load(templates.ui_path(name))
    twin = workflow.load(os.path.join(paths.WORKFLOWS_API, name + ".api.json"))
    assert ui["version"] == 0.4 and all(n["type"] in info or n["type"] in workflow.UI_ONLY for n in ui["nodes"])
    assert workflow.strip_meta(workflow.ui_to_api(ui, info)) == workflow.strip_meta(twin)


@pytest.mark.parametrize("name", NAMES)
def test_api_twin_runs_through_the_server(server, name):
    entry = server.run(workflow.load(os.path.join(paths.WORKFLOWS_API, name + ".api.json")))
    images = server.output_images(entry)
    assert images and all(np.isfinite(i).all() and i.std() > 0.01 for i in images)
