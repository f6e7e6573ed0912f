"""The host's own web UI in headless Chromium, driven by Playwright, as an artist uses it.

A workflow is opened the way a user picks a template (Templates -> Custom Nodes -> stepwise -> its card), queued
with the Run button, and followed until its images are shown on the canvas. Playwright's own browser downloads
are never used: the system Chromium (``apt-get install chromium``) is passed as the executable.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field

from . import paths, workflow

# Node types the frontend creates itself (never sent to /prompt, never in /object_info).
FRONTEND_ONLY = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}


def chromium_path() -> str | None:
    """The system Chromium: ``$STEPWISE_CHROMIUM`` or the first of chromium / chromium-browser on PATH."""
    explicit = os.environ.get("STEPWISE_CHROMIUM")
    if explicit:
        return explicit if os.path.isfile(explicit) else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


def unavailable() -> str | None:
    """Why the frontend can't be driven here (no Playwright, no Chromium), or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed in the host environment (make host installs it)"
    if chromium_path() is None:
        return "no system Chromium (apt-get install chromium, or set STEPWISE_CHROMIUM)"
    return None


@dataclass
class FrontendRun:
    """What happened when a workflow was opened and queued in the UI."""

    name: str
    node_types: list = field(default_factory=list)
    prompt: dict | None = None  # the API-format prompt the frontend posted
    response_status: int | None = None
    response: dict | None = None  # /prompt's JSON answer
    entry: dict | None = None  # the finished history entry
    dialogs: list = field(default_factory=list)  # texts of dialogs left open after loading
    failed_requests: list = field(default_factory=list)  # (status, url) answered >= 400 while loading
    screenshot: str | None = None
    seconds: float = 0.0
    card: dict = field(default_factory=dict)  # the template card as shown: title, description, whether either is cut
    notes: list = field(default_factory=list)  # texts of the Note nodes on the canvas
    texts: dict = field(default_factory=dict)  # node id -> the text a Preview Any node shows after the run
    widgets: dict = field(default_factory=dict)  # node id -> [(widget name, type, label, value)] as loaded


class Frontend:
    """One headless Chromium on a running :class:`~stepwise_dev.server.ComfyServer`."""

    def __init__(self, server, viewport=(1600, 1000)):
        self.server = server
        self.viewport = {"width": viewport[0], "height": viewport[1]}
        self._pw = None
        self.browser = None

    def __enter__(self):
        from playwright.sync_api import sync_playwright

        self._pw = sync_playwright().start()
        self.browser = self._pw.chromium.launch(executable_path=chromium_path(),
                                                args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        return self

    def __exit__(self, *exc):
        if self.browser is not None:
            self.browser.close()
        if self._pw is not None:
            self._pw.stop()

    def open(self):
        """A fresh page (own context) on the server, after the app has finished starting."""
        context = self.browser.new_context(viewport=self.viewport)
        page = context.new_page()
        page.goto(self.server.url)
        page.wait_for_function("window.app && window.app.graph && window.app.canvas", timeout=120_000)
        return page

    def pick_template(self, page, module: str, name: str, timeout: float = 60.0) -> dict:
        """Templates (sidebar) -> the custom node pack's group -> the workflow's card, as a user clicks; ``name`` is
        the template's file name without ``.json``. Returns the card as shown: its ``title`` and ``description``
        texts and whether the card cuts either (``title_cut``, ``description_cut``)."""
        dialog = page.get_by_role("dialog").filter(has_text="Template")
        if not dialog.is_visible():
            page.get_by_role("button", name="Templates").first.click()
        dialog.wait_for(state="visible", timeout=timeout * 1000)
        dialog.get_by_text(module, exact=True).first.click()
        # The card grid renders the cards in view only: search for the workflow as a user would.
        dialog.get_by_placeholder("Search templates").fill(name)
        # The frontend marks each card with the template's name; its title is an h3, its description the p below.
        card = dialog.locator(f'[data-testid="template-workflow-{name}"]').first
        card.wait_for(state="visible", timeout=timeout * 1000)
        shown = card.evaluate("""card => {
            const cut = e => !!e && (e.scrollHeight > e.clientHeight + 1 || e.scrollWidth > e.clientWidth + 1);
            const h3 = card.querySelector('h3'), p = card.querySelector('p');
            return {title: h3 ? h3.innerText : null, description: p ? p.innerText : null,
                    title_cut: cut(h3), description_cut: cut(p)};
        }""")
        card.click()
        dialog.wait_for(state="hidden", timeout=timeout * 1000)
        return shown

    def fit_view(self, page) -> dict:
        """Zoom and pan the canvas so the whole graph fills the window below the top bar, drawn in full detail at
        any zoom (the user setting "Zoom Node Level of Detail - font size threshold" set to 0); returns the
        graph's area on the page, for a screenshot clip."""
        page.evaluate("window.app.extensionManager.setting.set('LiteGraph.Canvas.MinFontSizeForLOD', 0)")
        clip = page.evaluate("""([left, top, pad]) => {
            const canvas = window.app.canvas, title = 30;
            let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
            for (const n of window.app.graph.nodes) {
                x0 = Math.min(x0, n.pos[0]); y0 = Math.min(y0, n.pos[1] - title);
                x1 = Math.max(x1, n.pos[0] + n.size[0]); y1 = Math.max(y1, n.pos[1] + n.size[1]);
            }
            const r = canvas.canvas.getBoundingClientRect();
            const scale = Math.min((r.width - left - pad) / (x1 - x0), (r.height - top - pad) / (y1 - y0), 1.25);
            canvas.ds.scale = scale;  // screen = (graph + offset) * scale
            canvas.ds.offset = [left / scale - x0, top / scale - y0];
            canvas.setDirty(true, true);
            return {x: r.left, y: r.top, width: Math.min(r.width, left + (x1 - x0) * scale + pad),
                    height: Math.min(r.height, top + (y1 - y0) * scale + pad)};
        }""", [90, 80, 30])
        page.wait_for_timeout(800)
        return clip

    def run_template(self, name: str, module: str = "stepwise", screenshot: str | None = None,
                     timeout: float = 600.0) -> FrontendRun:
        """Open ``name`` (the template's file name without ``.json``) from the pack's templates, queue it with Run,
        wait for its images on the canvas and the texts of its Preview Any nodes."""
        result = FrontendRun(name)
        start = time.perf_counter()
        page = self.open()
        try:
            page.on("response", lambda r: result.failed_requests.append((r.status, r.url))
                    if r.status >= 400 else None)
            expected = len(workflow.load(os.path.join(paths.EXAMPLE_WORKFLOWS, name + ".json"))["nodes"])
            result.card = self.pick_template(page, module, name)
            page.wait_for_function(f"window.app.graph.nodes.length === {expected}", timeout=60_000)
            page.wait_for_timeout(500)  # a missing-nodes dialog opens right after the graph is configured
            result.node_types = page.evaluate("window.app.graph.nodes.map(n => n.type)")
            result.dialogs = [d.inner_text() for d in page.get_by_role("dialog").all() if d.is_visible()]
            result.notes = page.evaluate("window.app.graph.nodes.filter(n => n.type === 'Note')"
                                         ".map(n => String(n.widgets?.[0]?.value ?? ''))")
            result.widgets = page.evaluate("""Object.fromEntries(window.app.graph.nodes.map(n => [String(n.id),
                (n.widgets ?? []).map(w => [w.name, w.type, w.label ?? null,
                                            typeof w.value === 'object' ? null : w.value])]))""")
            with page.expect_response(lambda r: r.url.endswith("/api/prompt") and r.request.method == "POST",
                                      timeout=60_000) as answer:
                page.get_by_role("button", name="Run", exact=True).first.click()
            response = answer.value
            result.response_status = response.status
            result.prompt = json.loads(response.request.post_data)["prompt"]
            result.response = response.json()
            if response.status == 200:
                result.entry = self.server.wait(result.response["prompt_id"], timeout)
                # With the whole graph in view, every image-showing output node gets its pictures drawn.
                self.fit_view(page)
                shown = [nid for nid, out in result.entry["outputs"].items() if out.get("images")]
                page.wait_for_function(
                    "ids => ids.every(id => { const n = window.app.graph.getNodeById(Number(id));"
                    " return n && n.imgs && n.imgs.length > 0 && n.imgs.every(i => i.complete); })",
                    arg=shown, timeout=60_000)
                texts = [nid for nid, out in result.entry["outputs"].items() if out.get("text")]
                texts = page.evaluate("ids => ids.filter(id => window.app.graph.getNodeById(Number(id))?.type"
                                      " === 'PreviewAny')", texts)
                page.wait_for_function(
                    "ids => ids.every(id => { const w = window.app.graph.getNodeById(Number(id))?.widgets"
                    "?.find(w => w.name === 'preview'); return w && w.value; })", arg=texts, timeout=60_000)
                result.texts = page.evaluate(
                    "ids => Object.fromEntries(ids.map(id => [id, window.app.graph.getNodeById(Number(id))"
                    ".widgets.find(w => w.name === 'preview').value]))", texts)
            if screenshot:
                os.makedirs(os.path.dirname(os.path.abspath(screenshot)), exist_ok=True)
                page.screenshot(path=screenshot, clip=self.fit_view(page))
                result.screenshot = screenshot
        finally:
            page.context.close()
        result.seconds = time.perf_counter() - start
        return result

