"""`make host` (scripts/host.sh): a clear message when the host cannot be had, and a quick no-op when cached."""

import os
import subprocess
import time

from stepwise_dev import paths

SCRIPT = os.path.join(paths.REPO, "scripts", "host.sh")


def _run(env_extra, tmp_path):
    env = {**os.environ, **env_extra}
    return subprocess.run(["bash", SCRIPT], capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)


def test_unreachable_source_fails_with_a_message_naming_the_settings(tmp_path):
    target = tmp_path / "ComfyUI"
    out = _run({"COMFYUI_PATH": str(target), "COMFYUI_SOURCE": str(tmp_path / "no-such-repo")}, tmp_path)
    assert out.returncode != 0
    assert "COMFYUI_SOURCE" in out.stderr and "COMFYUI_PATH" in out.stderr
    assert "a125cd84b054a57729b5eecab930ca9408719832" in out.stderr
    assert not target.exists(), "a failed clone must not leave a half-made host behind"


def test_a_folder_without_comfyui_is_refused(tmp_path):
    target = tmp_path / "not-comfy"
    target.mkdir()
    (target / "something.txt").write_text("x")
    out = _run({"COMFYUI_PATH": str(target)}, tmp_path)
    assert out.returncode != 0 and "holds no ComfyUI" in out.stderr


def test_cached_host_and_environment_are_reused_without_network(tmp_path):
    venv = os.path.dirname(os.path.dirname(paths.host_python()))
    start = time.monotonic()
    out = _run({"COMFYUI_PATH": paths.host_dir(), "STEPWISE_VENV": venv,
                "COMFYUI_SOURCE": str(tmp_path / "unreachable"), "PIP_NO_INDEX": "1"}, tmp_path)
    assert out.returncode == 0, out.stderr
    assert "is current" in out.stdout and "cloning" not in out.stdout and "installing" not in out.stdout
    assert time.monotonic() - start < 120
