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


# --- the lock (host.lock, `make lock`) ---

def _lock_entries() -> dict[str, tuple[str, str, list[str]]]:
    """name -> (version, marker, hashes) of every requirement in host.lock."""
    entries, current = {}, None
    with open(os.path.join(paths.REPO, "host.lock")) as f:
        for line in f:
            line = line.rstrip("\n")
            if line and not line.startswith((" ", "#")):
                spec, _, marker = line.rstrip(" \\").partition(" ; ")
                name, _, version = spec.partition("==")
                current = name.lower().replace("_", "-")
                entries.setdefault(current, []).append((version, marker.strip(), []))
            elif "--hash=sha256:" in line and current:
                entries[current][-1][2].append(line.split("--hash=sha256:")[1].split()[0])
    return entries


def test_the_lock_pins_every_package_with_hashes_and_the_tested_torch_family():
    entries = _lock_entries()
    assert len(entries) > 50
    for name, alternatives in entries.items():
        for version, _, hashes in alternatives:
            assert version and all(c not in version for c in "<>=*~,"), f"{name} is not pinned exactly: {version}"
            assert hashes and all(len(h) == 64 for h in hashes), f"{name}=={version} has no sha256 hashes"
    family = {n: entries[n][0][0] for n in ("torch", "torchaudio", "torchvision")}
    assert family["torch"] == family["torchaudio"], family  # torchaudio 2.11.1 beside torch 2.11.0 fails to load
    for name in ("comfyui-frontend-package", "pytest", "ruff", "playwright", "einops", "kornia", "safetensors"):
        assert name in entries, f"{name} missing from host.lock"


def test_the_installed_environment_is_exactly_the_lock():
    """Every package the lock names for this platform is installed at its version, and nothing else is."""
    from importlib import metadata

    from packaging.markers import Marker

    wanted = {}
    for name, alternatives in _lock_entries().items():
        for version, marker, _ in alternatives:
            if not marker or Marker(marker).evaluate():
                wanted[name] = version
    installed = {d.metadata["Name"].lower().replace("_", "-"): d.version for d in metadata.distributions()}
    assert {n: installed.get(n) for n in wanted if installed.get(n) != wanted[n]} == {}
    extra = set(installed) - set(wanted) - {"pip"}
    assert extra == set(), f"installed but not in host.lock: {sorted(extra)}"


def test_the_lock_was_made_from_todays_inputs_and_a_stale_lock_is_refused(tmp_path):
    script = ". scripts/lock-inputs.sh && lock_inputs \"$1\""
    env = {**os.environ, "REPO": paths.REPO, "HOST": paths.host_dir(),
           "PINNED": "a125cd84b054a57729b5eecab930ca9408719832"}
    inputs = subprocess.run(["bash", "-c", script, "-", str(tmp_path)], capture_output=True, text=True, env=env,
                            cwd=paths.REPO, check=True).stdout.strip()
    with open(os.path.join(paths.REPO, "host.lock")) as f:
        assert f"# inputs-sha256: {inputs}\n" in f.read(), "host.lock is stale: run make lock"

    repo = tmp_path / "repo"  # a copy of the pack whose requirements changed after the lock was made
    (repo / "scripts").mkdir(parents=True)
    for name in ("host.lock", "host-constraints.txt", "pyproject.toml", "scripts/host.sh", "scripts/lock-inputs.sh"):
        (repo / name).write_bytes(open(os.path.join(paths.REPO, name), "rb").read())
    (repo / "host-requirements.txt").write_text(open(os.path.join(paths.REPO, "host-requirements.txt")).read()
                                                + "six\n")
    venv = tmp_path / "venv"
    out = subprocess.run(["bash", str(repo / "scripts" / "host.sh")], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "COMFYUI_PATH": paths.host_dir(), "STEPWISE_VENV": str(venv)})
    assert out.returncode != 0 and "run make lock" in out.stderr and not venv.exists()
