"""Regenerate ``example_workflows/*.json`` (UI format) from the API-format twins in ``dev/workflows/``.

The API twins are the authored source; this lays each out as a workflow the web UI loads, using a real
server's ``/object_info`` for widget order, named by its title and given its Note (both from
``dev/workflows/templates.json``, see ``stepwise_dev.templates``); UI files no twin produces are removed.
``tests/server/test_workflows.py`` checks the two stay the same graph. Run through ``make workflows``.
"""

import glob
import json
import logging
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "dev"))

from stepwise_dev import host, paths, templates, workflow  # noqa: E402
from stepwise_dev.server import example_assets, stepwise_server  # noqa: E402


def main() -> int:
    host.setup()
    logging.basicConfig(level=logging.INFO, format="workflows: %(message)s", force=True)
    with tempfile.TemporaryDirectory(prefix="stepwise-wf-") as base:
        with stepwise_server(base, {}, **example_assets(paths.zoo_dir())) as srv:
            info = srv.object_info()
    names = sorted(os.path.basename(p)[: -len(".api.json")]
                   for p in glob.glob(os.path.join(paths.WORKFLOWS_API, "*.api.json")))
    if names != templates.stems():
        raise SystemExit(f"{templates.TABLE} must have exactly one entry per API twin: twins {names}, "
                         f"entries {templates.stems()}")
    written = set()
    for name in names:
        api = workflow.load(os.path.join(paths.WORKFLOWS_API, name + ".api.json"))
        ui = workflow.api_to_ui(api, info, note=templates.note(name))
        out = templates.ui_path(name)
        with open(out, "w", encoding="utf-8") as f:
            json.dump(ui, f, indent=2, ensure_ascii=False)
            f.write("\n")
        written.add(out)
        logging.info("wrote %s", os.path.relpath(out, paths.REPO))
        if not os.path.exists(templates.thumbnail_path(name)):
            logging.warning("%s has no thumbnail yet: run make screenshots", os.path.relpath(out, paths.REPO))
    for stale in sorted(set(glob.glob(os.path.join(paths.EXAMPLE_WORKFLOWS, "*.json"))) - written):
        os.remove(stale)
        logging.info("removed %s (no API twin has that title)", os.path.relpath(stale, paths.REPO))
    return 0


if __name__ == "__main__":
    sys.exit(main())
