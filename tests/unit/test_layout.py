"""The house rules that need no host: the pack's entry is guarded, kernels and the pure parts of models import
without ComfyUI, and no tool imports from tests/."""

import ast
import glob
import os
import subprocess
import sys
import textwrap

from stepwise_dev import paths

TOOLS = ("scripts", "bench", "eval", "dev")


def test_no_tool_imports_from_tests():
    for folder in TOOLS:
        for path in glob.glob(os.path.join(paths.REPO, folder, "**", "*.py"), recursive=True):
            rel = os.path.relpath(path, paths.REPO)
            text = open(path).read()
            for node in ast.walk(ast.parse(text)):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module]
                assert not any(n.split(".")[0] in ("tests", "conftest", "harness") for n in names), f"{rel}: {names}"
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    assert node.value not in ("tests", "tests/"), f"{rel} names the tests folder: {node.value!r}"


def test_the_pack_kernels_and_pure_models_import_without_the_host():
    """A fresh interpreter with no ComfyUI anywhere: the entry defines nothing, and nothing imports the host."""
    pure_models = ["checkpoint", "estimator", "images", "init", "pose", "pose_data", "world"]
    kernels = sorted(os.path.splitext(os.path.basename(p))[0] for p in glob.glob(os.path.join(paths.REPO, "kernels",
                                                                                                 "[a-z]*.py")))
    script = textwrap.dedent(f"""
        import importlib, importlib.util, sys
        sys.path = [p for p in sys.path if "ComfyUI" not in p]
        spec = importlib.util.spec_from_file_location("stepwise", {os.path.join(paths.REPO, "__init__.py")!r},
                                                      submodule_search_locations=[{paths.REPO!r}])
        mod = importlib.util.module_from_spec(spec); sys.modules["stepwise"] = mod; spec.loader.exec_module(mod)
        assert not hasattr(mod, "comfy_entrypoint"), "the entry must be guarded"
        for name in {kernels!r}:
            importlib.import_module("stepwise.kernels." + name)
        for name in {pure_models!r}:
            importlib.import_module("stepwise.models." + name)
        host = sorted(m for m in sys.modules if m.split(".")[0] in ("comfy", "comfy_api", "comfy_extras",
                                                                    "folder_paths", "nodes"))
        assert not host, host
    """)
    env = {**os.environ, "COMFYUI_PATH": "/nonexistent/ComfyUI", "PYTHONPATH": ""}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd="/")
    assert out.returncode == 0, out.stderr[-3000:]
    assert len(kernels) >= 10
