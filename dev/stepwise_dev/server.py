"""A real headless ComfyUI server (``main.py --cpu``) on a free loopback port, and a small HTTP client.

The server gets its own base directory (custom_nodes, models, input, output, temp, user, its database)
and its own process group, so it never touches the cached host's folders and ``stop`` ends
only what it started.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from io import BytesIO

from . import paths


class PromptRejected(Exception):
    """``/prompt`` answered 400: the host's validation refused the workflow. ``.body`` holds its JSON."""

    def __init__(self, body: dict):
        self.body = body
        super().__init__(json.dumps(body)[:2000])


class ExecutionFailed(Exception):
    """The prompt was accepted but failed while executing. ``.messages`` holds the history's messages."""

    def __init__(self, messages: list):
        self.messages = messages
        err = next((m[1] for m in messages if m[0] == "execution_error"), {})
        super().__init__(f"{err.get('node_type')}: {err.get('exception_type')}: {err.get('exception_message')}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _link(src: str, dst: str) -> None:
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    if os.path.lexists(dst):
        os.remove(dst)
    os.symlink(os.path.abspath(src), dst)


class ComfyServer:
    def __init__(self, base_dir: str, custom_nodes: dict[str, str], checkpoints: dict[str, str],
                 host: str | None = None, python: str | None = None, port: int | None = None,
                 extra_args: tuple[str, ...] = (), stepwise_models: dict[str, str] | None = None,
                 inputs: dict[str, str] | None = None):
        self.host = host or paths.host_dir()
        self.python = python or paths.host_python()
        self.base_dir = os.path.abspath(base_dir)
        self.custom_nodes = custom_nodes
        self.checkpoints = checkpoints
        self.stepwise_models = dict(stepwise_models or {})
        self.inputs = dict(inputs or {})
        self.port = port or free_port()
        self.extra_args = tuple(extra_args)
        self.url = f"http://127.0.0.1:{self.port}"
        self.client_id = uuid.uuid4().hex
        self.log_path = os.path.join(self.base_dir, "server.log")
        self.proc: subprocess.Popen | None = None

    # --- lifecycle ---
    def start(self, timeout: float = 240.0) -> "ComfyServer":
        if not os.path.isfile(os.path.join(self.host, "main.py")):
            raise RuntimeError(f"no ComfyUI host at {self.host}: run `make host` or set COMFYUI_PATH")
        for sub in ("input", "output", "temp", "user", "models/checkpoints", "custom_nodes"):
            os.makedirs(os.path.join(self.base_dir, sub), exist_ok=True)
        for name, src in self.custom_nodes.items():
            _link(src, os.path.join(self.base_dir, "custom_nodes", name))
        for name, src in self.checkpoints.items():
            _link(src, os.path.join(self.base_dir, "models", "checkpoints", name))
        for name, src in self.stepwise_models.items():
            _link(src, os.path.join(self.base_dir, "models", "stepwise", name))
        for name, src in self.inputs.items():
            _link(src, os.path.join(self.base_dir, "input", name))
        cmd = [self.python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
               "--base-directory", self.base_dir, "--database-url", f"sqlite:///{self.base_dir}/comfyui.db",
               "--disable-auto-launch", *self.extra_args]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, cwd=self.host, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.proc.returncode} while starting:\n{self.log()[-4000:]}")
            try:
                self.get_json("/system_stats", timeout=2)
                return self
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"ComfyUI did not answer within {timeout:.0f}s:\n{self.log()[-4000:]}")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=20)
            except ProcessLookupError:
                pass
        self._log.close()
        self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def add_checkpoint(self, name: str, path: str) -> None:
        """Link a checkpoint into the running server's ``models/checkpoints`` (the host rescans on change)."""
        self.checkpoints[name] = path
        _link(path, os.path.join(self.base_dir, "models", "checkpoints", name))

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()

    # --- HTTP ---
    def _request(self, path: str, data: dict | None = None, timeout: float = 30.0):
        body = None if data is None else json.dumps(data).encode()
        req = urllib.request.Request(self.url + path, data=body,
                                     headers={"Content-Type": "application/json"} if body else {})
        return urllib.request.urlopen(req, timeout=timeout)

    def get_json(self, path: str, timeout: float = 30.0):
        with self._request(path, timeout=timeout) as r:
            return json.loads(r.read())

    def get_bytes(self, path: str, timeout: float = 30.0) -> bytes:
        with self._request(path, timeout=timeout) as r:
            return r.read()

    def object_info(self, node_class: str | None = None) -> dict:
        info = self.get_json("/object_info" + (f"/{node_class}" if node_class else ""))
        return info[node_class] if node_class else info

    def queue(self, prompt: dict) -> str:
        """Post an API-format workflow to ``/prompt``; return its id or raise :class:`PromptRejected`."""
        try:
            with self._request("/prompt", {"prompt": prompt, "client_id": self.client_id}) as r:
                return json.loads(r.read())["prompt_id"]
        except urllib.error.HTTPError as e:
            if e.code == 400:
                raise PromptRejected(json.loads(e.read())) from None
            raise

    def wait(self, prompt_id: str, timeout: float = 600.0) -> dict:
        """Poll ``/history`` until the prompt finishes; return its entry or raise :class:`ExecutionFailed`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            entry = self.get_json(f"/history/{prompt_id}").get(prompt_id)
            if entry and entry.get("status", {}).get("completed") is not None:
                status = entry["status"]
                if status.get("status_str") == "error":
                    raise ExecutionFailed(status.get("messages", []))
                if status.get("completed"):
                    return entry
            if not self.alive():
                raise RuntimeError(f"ComfyUI died while running {prompt_id}:\n{self.log()[-4000:]}")
            time.sleep(0.1)
        raise TimeoutError(f"prompt {prompt_id} did not finish within {timeout:.0f}s")

    def run(self, prompt: dict, timeout: float = 600.0) -> dict:
        return self.wait(self.queue(prompt), timeout)

    def interrupt(self) -> None:
        self._request("/interrupt", {}).close()

    def output_images(self, entry: dict, node_id: str | None = None) -> list:
        """Fetch a finished prompt's images through ``/view`` as float32 HxWxC arrays in [0, 1]."""
        import numpy as np
        from PIL import Image

        images = []
        for nid, out in entry.get("outputs", {}).items():
            if node_id is not None and nid != str(node_id):
                continue
            for im in out.get("images", []):
                query = urllib.parse.urlencode({"filename": im["filename"], "subfolder": im["subfolder"],
                                                "type": im["type"]})
                png = Image.open(BytesIO(self.get_bytes("/view?" + query)))
                images.append(np.asarray(png.convert("RGB"), dtype=np.float32) / 255.0)
        return images


def stepwise_server(base_dir: str, checkpoints: dict[str, str], **kwargs) -> ComfyServer:
    """A server with the pack and the zoo fixture node installed beside it."""
    return ComfyServer(base_dir, {"stepwise": paths.REPO, "stepwise_zoo": paths.ZOO_NODE}, checkpoints, **kwargs)


def example_assets(zoo: str) -> dict:
    """What the example workflows need besides the zoo checkpoints: the shipped world text-to-image model(s), the
    demo refiner, pose model and artifact estimator, the example input image and pose file."""
    from . import refiners

    os.makedirs(zoo, exist_ok=True)
    models = [refiners.demo_refiner(zoo), refiners.demo_pose(zoo), refiners.demo_estimator(zoo)]
    inputs = [refiners.example_input(zoo), refiners.example_pose(zoo)]
    return {"stepwise_models": {**paths.world_models(), **{os.path.basename(m): m for m in models}},
            "inputs": {os.path.basename(i): i for i in inputs}}
