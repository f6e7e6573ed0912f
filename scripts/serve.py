"""``make serve``: ComfyUI with the pack, the tiny zoo and the demo models on http://127.0.0.1:8188 for a browser.

Uses the models ``make demo`` trained (``demo-output/models``) when they are there, otherwise the small cached
ones the tests train. The server's folders (input, output, user settings, its database) live in
``demo-output/serve`` so saved workflows and images stay between runs. Ctrl-C stops it.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "dev"))

from stepwise_dev import host, paths  # noqa: E402
from stepwise_dev.server import example_assets, stepwise_server  # noqa: E402

host.setup()  # puts the host and the pack on sys.path (the harness's model recipes import them)
from stepwise_dev import refiners  # noqa: E402

log = logging.getLogger("serve")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8188)
    parser.add_argument("--out", default=os.path.join(paths.REPO, "demo-output"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="serve: %(message)s", force=True)

    zoo = paths.zoo_dir()
    if not all(os.path.isfile(os.path.join(zoo, f)) for f in paths.TINY):
        import subprocess

        subprocess.run([sys.executable, paths.ZOO_BUILDER, "--out", zoo], check=True)
    assets = example_assets(zoo)
    trained = os.path.join(args.out, "models")
    for name in list(assets["stepwise_models"]):
        if refiners.cached(os.path.join(trained, name)):
            assets["stepwise_models"][name] = os.path.join(trained, name)
    base = os.path.join(args.out, "serve")
    os.makedirs(base, exist_ok=True)
    server = stepwise_server(base, {f: os.path.join(zoo, f) for f in paths.TINY}, port=args.port, **assets)
    with server:
        log.info("ComfyUI with Stepwise at %s (models: %s); log in %s; Ctrl-C stops it", server.url,
                 ", ".join(os.path.relpath(p, paths.REPO) if p.startswith(paths.REPO) else p
                           for p in assets["stepwise_models"].values()), server.log_path)
        try:
            server.proc.wait()
        except KeyboardInterrupt:
            log.info("stopping")
    return 0


if __name__ == "__main__":
    sys.exit(main())
