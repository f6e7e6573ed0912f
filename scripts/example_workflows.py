"""Regenerate ``example_workflows/*.json`` (UI format) from the API-format twins in ``dev/workflows/``.

The API twins are the authored source; this lays each out as a workflow the web UI loads, using a real
server's ``/object_info`` for widget order. ``tests/test_workflows.py`` checks the two stay the same graph.
Run through ``make workflows``.
"""

import glob
import json
import logging
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "dev"))

from stepwise_dev import host, paths, workflow  # noqa: E402
from stepwise_dev.server import example_assets, stepwise_server  # noqa: E402


def main() -> int:
    host.setup()
    logging.basicConfig(level=logging.INFO, format="workflows: %(message)s", force=True)
    with tempfile.TemporaryDirectory(prefix="stepwise-wf-") as base:
        with stepwise_server(base, {}, **example_assets(paths.zoo_dir())) as srv:
            info = srv.object_info()
    for api_path in sorted(glob.glob(os.path.join(paths.WORKFLOWS_API, "*.api.json"))):
        name = os.path.basename(api_path)[: -len(".api.json")]
        ui = workflow.api_to_ui(workflow.load(api_path), info)
        out = os.path.join(paths.EXAMPLE_WORKFLOWS, name + ".json")
        with open(out, "w") as f:
            json.dump(ui, f, indent=2)
            f.write("\n")
        logging.info("wrote %s", os.path.relpath(out, paths.REPO))
    return 0


if __name__ == "__main__":
    sys.exit(main())
