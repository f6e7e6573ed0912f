"""``make demo``: run Stepwise's example workflows on the tiny zoo through a real headless ComfyUI server.

Starts ``main.py --cpu`` on a free loopback port with the pack (and the zoo's fixture node) in its
custom_nodes, posts each workflow of ``tests/workflows/`` (the API twins of ``example_workflows/``) to
``/prompt``, and writes every image to ``<out>/<workflow>.png`` with a ``report.json`` of what ran and how long
it took.
"""

from __future__ import annotations

import argparse
import glob
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))

from harness import host, paths, workflow  # noqa: E402
from harness.server import example_assets, stepwise_server  # noqa: E402

log = logging.getLogger("demo")


def main(argv=None) -> int:
    host.setup()
    parser = argparse.ArgumentParser(description="Run the example workflows through a real ComfyUI server.")
    parser.add_argument("--out", default=os.path.join(paths.REPO, "demo-output"))
    parser.add_argument("--only", nargs="*", help="workflow names to run (default: all)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="demo: %(message)s", force=True)

    zoo = paths.zoo_dir()
    tiny = list(paths.TINY)
    if not all(os.path.isfile(os.path.join(zoo, f)) for f in tiny):
        subprocess.run([sys.executable, paths.ZOO_BUILDER, "--out", zoo], check=True)
    os.makedirs(args.out, exist_ok=True)

    names = [os.path.basename(p)[: -len(".api.json")] for p in sorted(glob.glob(os.path.join(paths.WORKFLOWS_API, "*.api.json")))]
    names.sort(key=lambda n: n != "text_to_image")  # the text-to-image workflow first
    if args.only:
        unknown = sorted(set(args.only) - set(names))
        if unknown:
            parser.error(f"unknown workflow(s) {unknown}; choose from {names}")
        names = [n for n in names if n in args.only]

    report = {"host": paths.host_dir(), "workflows": []}
    with tempfile.TemporaryDirectory(prefix="stepwise-demo-") as base:
        start = time.perf_counter()
        server = stepwise_server(base, {f: os.path.join(zoo, f) for f in tiny}, **example_assets(zoo))
        with server:
            report["server_start_s"] = round(time.perf_counter() - start, 2)
            log.info("ComfyUI is up at %s (%.1fs)", server.url, report["server_start_s"])
            for name in names:
                t0 = time.perf_counter()
                entry = server.run(workflow.load(os.path.join(paths.WORKFLOWS_API, name + ".api.json")))
                seconds = time.perf_counter() - t0
                files = []
                saved = [im for node_id in sorted(entry["outputs"], key=int)
                         for im in entry["outputs"][node_id].get("images", [])]
                for i, im in enumerate(saved):
                    src = os.path.join(base, "output", im["subfolder"], im["filename"])
                    dst = os.path.join(args.out, f"{name}.png" if i == 0 else f"{name}_{i}.png")
                    shutil.copyfile(src, dst)
                    files.append(os.path.relpath(dst, args.out))
                report["workflows"].append({"name": name, "seconds": round(seconds, 2), "images": files})
                log.info("%s: %d image(s) in %.1fs -> %s", name, len(files), seconds, ", ".join(files))
            shutil.copyfile(server.log_path, os.path.join(args.out, "server.log"))
    with open(os.path.join(args.out, "report.json"), "w") as f:
        json.dump(report, f, indent=2)
    log.info("wrote %s", os.path.join(args.out, "report.json"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
