"""The pack loads under ComfyUI's real loader, registers its V3 nodes, and imports cheaply and offline."""

import ast
import glob
import os
import subprocess
import sys
import textwrap

import pytest

from stepwise_dev import paths

pytestmark = pytest.mark.server


def test_pack_imports_without_errors_in_the_server_log(server):
    log = server.log().split("Starting server")[0]  # custom nodes are imported during startup
    pack_path = os.path.join(server.base_dir, "custom_nodes", "stepwise")
    import_lines = [line for line in log.splitlines() if line.rstrip().endswith(pack_path)]
    assert import_lines, f"the host did not report importing the pack:\n{log[-3000:]}"
    assert all("IMPORT FAILED" not in line for line in import_lines), import_lines
    assert "Cannot import" not in log and "Traceback" not in log, log[-3000:]
    assert "Unable to parse pyproject.toml" not in log


def test_object_info_lists_the_nodes_in_the_stepwise_category(server):
    info = server.object_info()
    ours = {k: v for k, v in info.items() if v.get("python_module", "").startswith("custom_nodes.stepwise")
            and not v["python_module"].startswith("custom_nodes.stepwise_zoo")}
    assert "StepwiseSplitSigmasAtTimestep" in ours
    for name, node in ours.items():
        assert name.startswith("Stepwise"), name
        assert node["category"] == "stepwise", name
        assert node["description"], f"{name} has no description"
        assert node["display_name"] and node["display_name"] != name, name
        for group in ("required", "optional"):
            for inp, spec in node["input"].get(group, {}).items():
                assert len(spec) > 1 and spec[1].get("tooltip"), f"{name}.{inp} has no tooltip"


def test_pack_defines_no_v1_mappings_and_uses_relative_imports_only():
    import stepwise

    assert not hasattr(stepwise, "NODE_CLASS_MAPPINGS")
    for path in glob.glob(os.path.join(paths.REPO, "*.py")) + glob.glob(os.path.join(paths.REPO, "*", "*.py")):
        rel = os.path.relpath(path, paths.REPO)
        if rel.split(os.sep)[0] not in ("nodes", "kernels", "models", "trainers", "__init__.py"):
            continue
        tree = ast.parse(open(path).read())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                assert node.module.split(".")[0] not in ("nodes", "kernels", "models", "trainers"), \
                    f"{rel}: absolute import {node.module}"
            if rel.startswith("kernels") and isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                assert not any(n.split(".")[0] in ("comfy", "comfy_api", "nodes", "folder_paths") for n in names), \
                    f"{rel} imports the host"


PACK_FOLDERS = ("nodes", "kernels", "models", "trainers")


def _pack_folders_imported(rel: str, tree: ast.AST) -> set[str]:
    """The pack's top-level folders that the module at ``rel`` (a path inside the repository) imports, through
    relative imports (``from ..models import x``, ``from .. import models``) or ``stepwise.<folder>``."""
    package = rel.split(os.sep)[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name.split(".")[1:2] for a in node.names if a.name.startswith("stepwise.")]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            targets = [node.module.split(".")[1:2]] if (node.module or "").startswith("stepwise.") else []
        elif isinstance(node, ast.ImportFrom):
            assert node.level <= len(package) + 1, f"{rel}: `from {'.' * node.level}{node.module or ''}` leaves the pack"
            anchor = package[:len(package) - (node.level - 1)]
            if node.module:
                targets = [(anchor + node.module.split("."))[:1]]
            else:
                targets = [(anchor + [a.name])[:1] for a in node.names]
        else:
            continue
        found.update(t[0] for t in targets if t and t[0] in PACK_FOLDERS)
    return found


def test_import_direction_trainers_read_models_and_kernels_and_nothing_reads_trainers():
    """trainers/ builds on models/ and kernels/ only; nodes/, models/ and kernels/ never import trainers/ (the nodes
    must load without the training code)."""
    seen: dict[str, set[str]] = {}
    for folder in PACK_FOLDERS:
        for path in glob.glob(os.path.join(paths.REPO, folder, "**", "*.py"), recursive=True):
            rel = os.path.relpath(path, paths.REPO)
            imported = _pack_folders_imported(rel, ast.parse(open(path).read())) - {folder}
            seen[rel] = imported
            if folder == "trainers":
                assert imported <= {"models", "kernels"}, f"{rel} imports {sorted(imported)} of the pack"
            else:
                assert "trainers" not in imported, f"{rel} imports trainers/"
    assert seen, "no pack modules found"
    sample = ast.parse("from ..models import a\nfrom .. import kernels\nfrom .loop import b\nimport stepwise.nodes.c\n"
                       "def f():\n    from ..models.world import d\n")
    assert _pack_folders_imported(os.path.join("trainers", "x.py"), sample) == {"models", "kernels", "trainers", "nodes"}


def test_importing_the_pack_touches_no_network_and_no_heavy_modules():
    """Fresh interpreter, sockets disabled: import the pack and ask it for its node list."""
    script = textwrap.dedent(f"""
        import asyncio, importlib.util, socket, sys
        sys.path.insert(0, {paths.host_dir()!r})
        import torch, comfy.options
        sys.argv = [sys.argv[0]] + ([] if torch.cuda.is_available() else ["--cpu"])  # as main.py --cpu here
        comfy.options.enable_args_parsing()
        import comfy.cli_args
        def refuse(*a, **k): raise RuntimeError("network access during import")
        socket.socket.connect = refuse
        socket.create_connection = refuse
        spec = importlib.util.spec_from_file_location("stepwise", {os.path.join(paths.REPO, "__init__.py")!r},
                                                      submodule_search_locations=[{paths.REPO!r}])
        mod = importlib.util.module_from_spec(spec); sys.modules["stepwise"] = mod; spec.loader.exec_module(mod)
        before = set(sys.modules)
        nodes = asyncio.run(asyncio.run(mod.comfy_entrypoint()).get_node_list())
        assert nodes, "empty node list"
        heavy = [m for m in ("kornia", "transformers", "stepwise.models.world")
                 if m in sys.modules] + [m for m in sys.modules if m.startswith("stepwise.trainers")]
        assert not heavy, heavy
        print(len(nodes))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
