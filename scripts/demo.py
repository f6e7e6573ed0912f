"""``make demo``: train the demo models on the synthetic world, run every example workflow through a real server.

1. Trains the three demo checkpoints afresh through ``train.py`` (the recipes of ``dev/stepwise_dev/refiners.py``,
   with more steps): the shapes refiner, the stick-figure pose model and the artifact estimator reading the pose
   model. Budget: 10 minutes on 2 CPU cores for all three (the report says whether it held).
2. Starts ``main.py --cpu`` on a free loopback port with the pack, the tiny zoo checkpoints, the demo models and
   the example inputs, and posts each workflow of ``dev/workflows/`` (the API twins of ``example_workflows/``)
   to ``/prompt``.
3. Writes to ``<out>/``: every image (``<workflow>[_i].png``), ``contact_sheet.png`` (a row per workflow, each
   image captioned with the node that saved it, each row with the Stepwise nodes it shows), ``report.json`` and
   ``report.md`` (what ran, timings), the server's log, and the demo models (``models/``, for ``make serve``).
"""

from __future__ import annotations

import argparse
import glob
import json
import logging
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "dev"))

from stepwise_dev import host, images, paths, workflow  # noqa: E402
from stepwise_dev.measured import measured  # noqa: E402
from stepwise_dev.server import stepwise_server  # noqa: E402

host.setup()  # puts the host and the pack on sys.path (the harness's model recipes import them)
from stepwise_dev import refiners  # noqa: E402

log = logging.getLogger("demo")

TRAIN_BUDGET_S = 600
STEPS = {"refiner": 200, "pose": 300, "estimator": 80}
FILES = {"refiner": refiners.DEMO_REFINER, "pose": refiners.DEMO_POSE, "estimator": refiners.DEMO_ESTIMATOR}


def train_models(models_dir: str, steps: dict) -> dict:
    """Train the three demo models into ``models_dir`` (the estimator reads the pose model); seconds per model."""
    os.makedirs(models_dir, exist_ok=True)
    seconds = {}
    for kind in ("refiner", "pose", "estimator"):
        t0 = time.perf_counter()
        base = os.path.join(models_dir, FILES["pose"]) if kind == "estimator" else None
        refiners.train_demo(kind, os.path.join(models_dir, FILES[kind]), steps[kind], base=base, cache=False)
        seconds[kind] = round(time.perf_counter() - t0, 1)
        log.info("trained the demo %s (%d steps) in %.0fs", kind, steps[kind], seconds[kind])
    return seconds


def serving_assets(models_dir: str) -> dict:
    """The server's Stepwise models (the shipped world models and the demo models) and the example inputs."""
    os.makedirs(paths.zoo_dir(), exist_ok=True)
    inputs = [refiners.example_input(paths.zoo_dir()), refiners.example_pose(paths.zoo_dir())]
    return {"stepwise_models": {**paths.world_models(), **{name: os.path.join(models_dir, name) for name in FILES.values()}},
            "inputs": {os.path.basename(i): i for i in inputs}}


def stepwise_nodes(prompt: dict, object_info: dict) -> list[str]:
    """Display names of the Stepwise nodes in an API prompt, in node-id order, without repeats."""
    names = []
    for nid in sorted(prompt, key=int):
        info = object_info.get(prompt[nid]["class_type"], {})
        if info.get("category") == "stepwise" and info["display_name"] not in names:
            names.append(info["display_name"])
    return names


def contact_sheet(rows: list[dict], path: str, tile: int = 160) -> None:
    """One row per workflow: its title, Stepwise nodes and measured effect above its images, each captioned with its
    saving node."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=14)
    small = ImageFont.load_default(size=12)
    pad, head, cap = 12, 76, 34
    per_row = max(len(r["images"]) for r in rows)
    width = pad + per_row * (tile + pad)
    width = max(width, 900)
    height = pad + sum(head + tile + cap + pad for r in rows)
    sheet = Image.new("RGB", (width, height), (250, 250, 248))
    draw = ImageDraw.Draw(sheet)
    y = pad
    for row in rows:
        draw.text((pad, y), row["name"], fill=(20, 20, 20), font=font)
        draw.text((pad, y + 20), "Stepwise nodes: " + (", ".join(row["nodes"]) or "none (the plain baseline)"),
                  fill=(70, 70, 70), font=small)
        for j, line in enumerate(_wrap("Measured: " + row["measured"], (width - 2 * pad) // 7)[:2]):
            draw.text((pad, y + 38 + 15 * j), line, fill=(20, 70, 140), font=small)
        y += head
        for i, (array, caption) in enumerate(zip(row["images"], row["captions"])):
            im = images.tile(array, tile)
            x = pad + i * (tile + pad)
            sheet.paste(im, (x + (tile - im.width) // 2, y + (tile - im.height) // 2))
            for j, line in enumerate(_wrap(caption, 26)[:2]):
                draw.text((x, y + tile + 3 + 14 * j), line, fill=(40, 40, 40), font=small)
        y += tile + cap + pad
    sheet.save(path)


def _wrap(text: str, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return lines + ([line] if line else [])


def write_markdown(report: dict, path: str) -> None:
    t = report["training"]
    lines = ["# Stepwise demo", "",
             f"Host: ComfyUI at `{report['host']}`; {report['cpu_count']} CPU cores.", "",
             "## Demo models (trained on the synthetic world)", "",
             "| model | steps | seconds |", "| --- | ---: | ---: |"]
    lines += [f"| {k} | {t['steps'][k]} | {t['seconds'][k]} |" for k in t["seconds"]]
    lines += ["", f"Total {t['total_s']} s against a budget of {TRAIN_BUDGET_S} s: "
              f"{'within' if t['within_budget'] else 'OVER'} budget." if t["seconds"] else "Reused models.", "",
              "## Workflows (through the real server's /prompt)", "",
              "| workflow | Stepwise nodes | measured effect | images | seconds |", "| --- | --- | --- | ---: | ---: |"]
    lines += [f"| {w['name']} | {', '.join(w['nodes'])} | {w['measured']['text']}"
              f"{' (' + w['measured']['source'] + ')' if w['measured']['source'] else ''} | {len(w['images'])} | "
              f"{w['seconds']} |" for w in report["workflows"]]
    lines += ["", f"Server start {report['server_start_s']} s. Every Stepwise node shown: "
              f"{'yes' if not report['nodes_not_shown'] else 'no, missing ' + ', '.join(report['nodes_not_shown'])}.",
              "", "![contact sheet](contact_sheet.png)", ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Train the demo models and run every example workflow.")
    parser.add_argument("--out", default=os.path.join(paths.REPO, "demo-output"))
    parser.add_argument("--only", nargs="*", help="workflow names to run (default: all)")
    parser.add_argument("--reuse-models", action="store_true",
                        help="keep demo models already in <out>/models instead of training them again")
    for kind, steps in STEPS.items():
        parser.add_argument(f"--{kind}-steps", type=int, default=steps, help=f"training steps of the {kind}")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="demo: %(message)s", force=True)

    names = [os.path.basename(p)[: -len(".api.json")] for p in sorted(glob.glob(os.path.join(paths.WORKFLOWS_API, "*.api.json")))]
    names.sort(key=lambda n: n != "text_to_image")  # the plain baseline first
    if args.only:
        unknown = sorted(set(args.only) - set(names))
        if unknown:
            parser.error(f"unknown workflow(s) {unknown}; choose from {names}")
        names = [n for n in names if n in args.only]

    zoo = paths.zoo_dir()
    if not all(os.path.isfile(os.path.join(zoo, f)) for f in paths.TINY):
        import subprocess

        subprocess.run([sys.executable, paths.ZOO_BUILDER, "--out", zoo], check=True)
    os.makedirs(args.out, exist_ok=True)
    for old in glob.glob(os.path.join(args.out, "*.png")):
        os.remove(old)
    models_dir = os.path.join(args.out, "models")
    steps = {k: getattr(args, f"{k}_steps") for k in STEPS}
    reuse = args.reuse_models and all(refiners.cached(os.path.join(models_dir, f)) for f in FILES.values())
    seconds = {} if reuse else train_models(models_dir, steps)
    total = round(sum(seconds.values()), 1)
    report = {"host": paths.host_dir(), "cpu_count": os.cpu_count(),
              "training": {"steps": steps, "seconds": seconds, "total_s": total, "budget_s": TRAIN_BUDGET_S,
                           "within_budget": total <= TRAIN_BUDGET_S},
              "workflows": []}
    rows = []
    with tempfile.TemporaryDirectory(prefix="stepwise-demo-") as base:
        start = time.perf_counter()
        server = stepwise_server(base, {f: os.path.join(zoo, f) for f in paths.TINY}, **serving_assets(models_dir))
        with server:
            report["server_start_s"] = round(time.perf_counter() - start, 2)
            log.info("ComfyUI is up at %s (%.1fs)", server.url, report["server_start_s"])
            info = server.object_info()
            shown = set()
            for name in names:
                prompt = workflow.load(os.path.join(paths.WORKFLOWS_API, name + ".api.json"))
                t0 = time.perf_counter()
                entry = server.run(prompt)
                seconds_run = time.perf_counter() - t0
                files, arrays, captions = [], [], []
                for node_id in sorted(entry["outputs"], key=int):
                    # Saved images only: the upscaled previews beside small results are for the web UI's canvas.
                    images = [im for im in entry["outputs"][node_id].get("images", []) if im["type"] == "output"]
                    title = prompt[node_id].get("_meta", {}).get("title", prompt[node_id]["class_type"])
                    arrays_here = server.output_images({"outputs": {node_id: {"images": images}}})
                    for k, (im, array) in enumerate(zip(images, arrays_here)):
                        src = os.path.join(base, "output", im["subfolder"], im["filename"])
                        dst = os.path.join(args.out, f"{name}.png" if not files else f"{name}_{len(files)}.png")
                        shutil.copyfile(src, dst)
                        files.append(os.path.basename(dst))
                        arrays.append(array)
                        captions.append(title + (f" ({k + 1})" if len(images) > 1 else ""))
                nodes = stepwise_nodes(prompt, info)
                shown.update(nodes)
                report["workflows"].append({"name": name, "nodes": nodes, "seconds": round(seconds_run, 2),
                                            "images": files})
                rows.append({"name": name, "nodes": nodes, "images": arrays, "captions": captions})
                log.info("%s: %d image(s) in %.1fs", name, len(files), seconds_run)
            every = sorted(v["display_name"] for v in info.values() if v.get("category") == "stepwise")
            report["nodes_not_shown"] = sorted(set(every) - shown) if not args.only else []
            shutil.copyfile(server.log_path, os.path.join(args.out, "server.log"))
    for run, row in zip(report["workflows"], rows):  # read once every workflow ran: the latest results
        run["measured"] = measured(run["name"])
        row["measured"] = run["measured"]["text"]
    contact_sheet(rows, os.path.join(args.out, "contact_sheet.png"))
    with open(os.path.join(args.out, "report.json"), "w") as f:
        json.dump(report, f, indent=2)
    write_markdown(report, os.path.join(args.out, "report.md"))
    log.info("training %.0fs (budget %ds), %d workflows; wrote %s", total, TRAIN_BUDGET_S, len(names),
             os.path.join(args.out, "report.md"))
    if report["nodes_not_shown"]:
        log.warning("Stepwise nodes in no example workflow: %s", ", ".join(report["nodes_not_shown"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
