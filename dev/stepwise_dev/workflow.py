"""UI-format workflows (what artists share and the web UI loads) and API-format prompts (what ``/prompt`` runs).

Both conversions are driven by the server's ``/object_info``, the same node definitions the web UI builds
its widgets from: widget values are read in input order, and the frontend's extra per-widget values
(``control_after_generate`` after seeds, the upload button after ``image_upload`` combos) are written and
skipped the way the frontend does.
"""

from __future__ import annotations

import json

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
CONTROL_VALUES = {"fixed", "increment", "decrement", "randomize"}
# Nodes that exist only in the web UI: never sent to /prompt, never in /object_info.
UI_ONLY = {"Note", "MarkdownNote"}
NOTE_COLOR, NOTE_BGCOLOR = "#432", "#653"  # the web UI's colours for a new Note
# Display widgets the host's own frontend extensions add to a node and send in the prompt, which the server ignores
# (Preview Any's text box).
UI_EXTRA_INPUTS = {"PreviewAny": {"preview"}}


def _input_specs(info: dict) -> list[tuple[str, str, dict]]:
    """(name, type, options) for a node's required then optional inputs, in the UI's order."""
    order = info.get("input_order") or {k: list(v) for k, v in info["input"].items() if k != "hidden"}
    specs = []
    for group in ("required", "optional"):
        for name in order.get(group, []):
            spec = info["input"][group][name]
            kind = spec[0]
            options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            specs.append((name, "COMBO" if isinstance(kind, list) else kind, options))
    return specs


def _is_widget(kind: str, options: dict) -> bool:
    return kind in WIDGET_TYPES and not options.get("forceInput", False)


def _has_control(name: str, kind: str, options: dict) -> bool:
    if kind not in ("INT", "FLOAT"):
        return False
    if "control_after_generate" in options:
        return bool(options["control_after_generate"])
    return name in ("seed", "noise_seed")


def ui_to_api(ui: dict, object_info: dict) -> dict:
    """Convert a UI-format workflow to the API format ``/prompt`` takes. Muted/bypassed nodes are refused."""
    links = {link[0]: link for link in ui["links"]}
    api = {}
    for node in ui["nodes"]:
        if node["type"] in UI_ONLY:
            continue
        if node.get("mode", 0) != 0:
            raise ValueError(f"node {node['id']} ({node['type']}) is muted or bypassed; the converter only takes active nodes")
        info = object_info[node["type"]]
        linked = {}
        for inp in node.get("inputs", []):
            if inp.get("link") is not None:
                link = links[inp["link"]]
                linked[inp["name"]] = [str(link[1]), link[2]]
        values = list(node.get("widgets_values") or [])
        inputs = {}
        for name, kind, options in _input_specs(info):
            if name in linked:
                inputs[name] = linked[name]
                if _is_widget(kind, options):  # a linked widget still holds its slot in widgets_values
                    values and values.pop(0)
                    if _has_control(name, kind, options) and values and values[0] in CONTROL_VALUES:
                        values.pop(0)
                continue
            if not _is_widget(kind, options) or not values:
                continue
            inputs[name] = values.pop(0)
            if _has_control(name, kind, options) and values and values[0] in CONTROL_VALUES:
                values.pop(0)
            if options.get("image_upload") and values:
                values.pop(0)
        api[str(node["id"])] = {"class_type": node["type"], "inputs": inputs,
                                "_meta": {"title": node.get("title", info.get("display_name", node["type"]))}}
    return api


def _depths(api: dict) -> dict[str, int]:
    depth: dict[str, int] = {}

    def visit(nid: str, stack=()) -> int:
        if nid in depth:
            return depth[nid]
        if nid in stack:
            raise ValueError(f"workflow has a cycle through node {nid}")
        parents = [v[0] for v in api[nid]["inputs"].values() if isinstance(v, list) and len(v) == 2 and isinstance(v[0], str)]
        depth[nid] = 1 + max((visit(p, stack + (nid,)) for p in parents), default=-1)
        return depth[nid]

    for nid in api:
        visit(nid)
    return depth


def note_height(text: str, chars_per_line: int = 46, line_px: int = 15) -> int:
    """Roughly the height a Note 300 px wide needs to show ``text`` without scrolling."""
    lines = sum(max(1, -(-len(line) // chars_per_line)) for line in text.split("\n"))
    return 40 + line_px * lines


def api_to_ui(api: dict, object_info: dict, note: str | None = None) -> dict:
    """Lay an API-format prompt out as a UI-format workflow (schema 0.4) the web UI loads; ``note`` adds a Note node
    (UI only: the prompt the UI queues is unchanged) at the top of the first column."""
    depth = _depths(api)
    order = sorted(api, key=lambda n: (depth[n], int(n)))
    column_y: dict[int, int] = {0: 60 + note_height(note) + 50} if note else {}
    nodes, links = [], []
    out_links: dict[tuple[str, int], list[int]] = {}
    for nid in order:
        for inp_name, value in api[nid]["inputs"].items():
            if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
                link_id = len(links) + 1
                out_links.setdefault((value[0], value[1]), []).append(link_id)
                links.append([link_id, int(value[0]), value[1], int(nid), inp_name, None])
    for idx, nid in enumerate(order):
        node = api[nid]
        info = object_info[node["class_type"]]
        inputs, widgets = [], []
        for name, kind, options in _input_specs(info):
            value = node["inputs"].get(name)
            is_link = isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)
            if is_link:
                link_id = next(link[0] for link in links if link[3] == int(nid) and link[4] == name)
                entry = {"name": name, "type": kind, "link": link_id}
                if _is_widget(kind, options):
                    entry["widget"] = {"name": name}
                inputs.append(entry)
            if not _is_widget(kind, options):
                continue
            if not is_link and name not in node["inputs"]:
                raise ValueError(f"node {nid} ({node['class_type']}) lacks widget input {name!r}")
            widgets.append(None if is_link else value)
            if _has_control(name, kind, options):
                widgets.append("fixed")
            if options.get("image_upload"):
                widgets.append("image")
        outputs = []
        for slot, (otype, oname) in enumerate(zip(info["output"], info.get("output_name", info["output"]))):
            outputs.append({"name": oname, "type": otype if isinstance(otype, str) else "COMBO",
                            "links": out_links.get((nid, slot), []), "slot_index": slot})
        col = depth[nid]
        y = column_y.get(col, 60)
        # Roughly the height the web UI draws: slot rows, widget rows, text boxes, an image preview.
        multiline = sum(1 for name, kind, options in _input_specs(info)
                        if kind == "STRING" and options.get("multiline") and name in node["inputs"])
        preview = 240 if info.get("output_node") and not info["output"] else 0
        height = 40 + 24 * (max(len(inputs), len(outputs)) + len(widgets)) + 90 * multiline + preview
        column_y[col] = y + height + 50
        ui_node = {"id": int(nid), "type": node["class_type"], "pos": [40 + 340 * col, y], "size": [300, height],
                   "flags": {}, "order": idx, "mode": 0, "inputs": inputs, "outputs": outputs,
                   "properties": {"Node name for S&R": node["class_type"]}, "widgets_values": widgets}
        title = node.get("_meta", {}).get("title")
        if title and title != info.get("display_name", node["class_type"]):
            ui_node["title"] = title
        nodes.append(ui_node)
    # links: [id, origin node, origin slot, target node, target slot index, type]
    by_id = {n["id"]: n for n in nodes}
    ui_links = []
    for link_id, origin, oslot, target, iname, _ in links:
        tslot = next(i for i, e in enumerate(by_id[target]["inputs"]) if e["name"] == iname)
        ui_links.append([link_id, origin, oslot, target, tslot, by_id[origin]["outputs"][oslot]["type"]])
    last_id = max(int(n) for n in api)
    if note:
        last_id += 1
        nodes.append({"id": last_id, "type": "Note", "pos": [40, 60], "size": [300, note_height(note)], "flags": {},
                      "order": len(nodes), "mode": 0, "inputs": [], "outputs": [], "title": "Note: read me first",
                      "properties": {"text": ""}, "widgets_values": [note], "color": NOTE_COLOR,
                      "bgcolor": NOTE_BGCOLOR})
    return {"last_node_id": last_id, "last_link_id": len(ui_links), "nodes": nodes, "links": ui_links,
            "groups": [], "config": {}, "extra": {"ds": {"scale": 1.0, "offset": [0, 0]}}, "version": 0.4}


def load(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def strip_meta(api: dict) -> dict:
    """The part of an API prompt the server executes (titles and the frontend's display-only inputs dropped), for
    comparisons."""
    return {nid: {"class_type": n["class_type"],
                  "inputs": {k: v for k, v in n["inputs"].items() if k not in UI_EXTRA_INPUTS.get(n["class_type"], ())}}
            for nid, n in api.items()}
