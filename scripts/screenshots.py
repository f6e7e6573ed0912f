"""``make screenshots``: every example workflow run in the host's web UI, for the README and the template picker.

Drives the real frontend exactly as ``tests/test_frontend.py`` does (pick the template, Run, wait for the images
on the canvas) and writes

- ``docs/screenshots/<workflow>.png``: the whole graph after the run, as the artist sees it;
- ``example_workflows/<title>.jpg``: the template's thumbnail (the workflow's saved images side by side; previews
  are left out), which the host serves beside the workflow ``<title>.json`` for the UI's template picker.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "dev"))

from stepwise_dev import frontend, host, images, paths, templates  # noqa: E402
from stepwise_dev.server import example_assets, stepwise_server  # noqa: E402

log = logging.getLogger("screenshots")


def thumbnail(arrays, size: int = 384):
    """The output images side by side (nearest-neighbour upscaled: the demo models draw 32 px pictures), on a
    square dark card."""
    from PIL import Image

    cols = min(len(arrays), 3)
    rows = -(-len(arrays) // cols)
    cell = size // max(cols, rows)
    card = Image.new("RGB", (size, size), (24, 24, 24))
    x0 = (size - cols * cell) // 2
    y0 = (size - rows * cell) // 2
    for i, array in enumerate(arrays):
        tile = images.tile(array, cell - 4)
        r, c = divmod(i, cols)
        card.paste(tile, (x0 + c * cell + (cell - tile.width) // 2, y0 + r * cell + (cell - tile.height) // 2))
    return card


def main(argv=None) -> int:
    host.setup()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(paths.REPO, "docs", "screenshots"))
    parser.add_argument("--only", nargs="*", help="workflow stems, as in dev/workflows/ (default: every one)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="screenshots: %(message)s", force=True)
    why = frontend.unavailable()
    if why:
        parser.error(why)
    names = templates.stems()
    if args.only:
        names = [n for n in names if n in args.only]
    zoo = paths.zoo_dir()
    with tempfile.TemporaryDirectory(prefix="stepwise-shots-") as base:
        server = stepwise_server(base, {f: os.path.join(zoo, f) for f in paths.TINY}, **example_assets(zoo))
        with server, frontend.Frontend(server, viewport=(2200, 1300)) as ui:
            for name in names:
                shot = os.path.join(args.out, name + ".png")
                run = ui.run_template(templates.title(name), screenshot=shot)
                if run.response_status != 200 or run.entry is None:
                    raise RuntimeError(f"{name}: the UI's prompt was refused: {run.response}")
                thumb = templates.thumbnail_path(name)
                saved = {nid: {"images": [im for im in out.get("images", []) if im["type"] == "output"]}
                         for nid, out in run.entry["outputs"].items()}
                thumbnail(server.output_images({"outputs": saved})).save(thumb, quality=88)
                log.info("%s: %.1fs -> %s, %s", name, run.seconds, os.path.relpath(shot, paths.REPO),
                         os.path.relpath(thumb, paths.REPO))
    return 0


if __name__ == "__main__":
    sys.exit(main())
