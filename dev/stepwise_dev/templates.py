"""The example workflows as the host's template browser shows them: a title and a note for each, from one table.

The pinned web UI (comfyui-frontend-package 1.27) reads nothing but the file name for a custom node pack's template:
the card's title is the name of ``example_workflows/<name>.json`` and its description is the same name with ``-`` and
``_`` shown as spaces (``getTemplateTitle`` / ``getTemplateDescription``; the host's ``/workflow_templates`` lists
file names only). So each UI file is named by its title, while its API twin in ``dev/workflows/`` keeps a short
stem for the tests. ``dev/workflows/templates.json`` holds, per stem, the ``title`` (the file name, at most
:data:`MAX_TITLE` characters so the card shows it whole, no characters a file system refuses) and the ``note``: the
text of the Note node ``make workflows`` puts in the UI workflow (what the graph shows, what to look at, what to swap
in for real use).
"""

from __future__ import annotations

import json
import os
import re

from . import paths

TABLE = os.path.join(paths.WORKFLOWS_API, "templates.json")
MAX_TITLE = 52
_BAD = re.compile(r'[<>:"/\\|?*\x00-\x1f]')  # refused in file names on some system the pack is cloned onto


def table() -> dict[str, dict]:
    """``{stem: {"title": ..., "note": ...}}``, checked."""
    with open(TABLE, encoding="utf-8") as f:
        data = json.load(f)
    titles = set()
    for stem, entry in data.items():
        title = entry["title"]
        if _BAD.search(title) or title != title.strip() or len(title) > MAX_TITLE:
            raise ValueError(f"{stem}: title {title!r} is not a usable file name of at most {MAX_TITLE} characters")
        if title.lower() in titles:
            raise ValueError(f"{stem}: title {title!r} is used twice")
        titles.add(title.lower())
        if not entry.get("note", "").strip():
            raise ValueError(f"{stem}: no note")
    return data


def stems() -> list[str]:
    return sorted(table())


def title(stem: str) -> str:
    return table()[stem]["title"]


def note(stem: str) -> str:
    return table()[stem]["note"]


def description(stem: str) -> str:
    """The card's description as the pinned frontend shows it: the title with ``-`` and ``_`` as spaces (runs of
    spaces drawn as one)."""
    return " ".join(re.sub(r"[-_]", " ", title(stem)).split())


def ui_path(stem: str) -> str:
    """The UI-format workflow the template browser lists: ``example_workflows/<title>.json``."""
    return os.path.join(paths.EXAMPLE_WORKFLOWS, title(stem) + ".json")


def thumbnail_path(stem: str) -> str:
    return os.path.join(paths.EXAMPLE_WORKFLOWS, title(stem) + ".jpg")
