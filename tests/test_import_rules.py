"""Dependencies point one way (issue 19): shipped code never imports the test harness, and only comfy_adapter/
imports ComfyUI. Imports are read with `ast`, so a module name in a string or a docstring does not count, and
imports inside functions do."""
import ast
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

SHIPPED = ("core", "nodes", "trainers", "evaluation", "comfy_adapter")   # and the pack's entry, __init__.py
MAY_IMPORT_COMFYUI = ("comfy_adapter", "devkit", "tests")
# ComfyUI's top-level modules and packages. ComfyUI puts its root first on sys.path, so an absolute `nodes` or
# `utils` is ComfyUI's; the pack's own nodes/ package is only ever imported relatively.
COMFYUI_MODULES = {"comfy", "comfy_api", "comfy_api_nodes", "comfy_config", "comfy_execution", "comfy_extras",
                   "comfyui_version", "app", "api_server", "middleware", "protocol", "cuda_malloc", "folder_paths",
                   "execution", "server", "nodes", "utils", "latent_preview", "node_helpers"}


def imported_modules(path: Path, root: Path) -> list[tuple[int, str, bool]]:
    """(line, absolute module name, written relatively) for every import in the file; relative imports are
    resolved against the file's package inside `root`."""
    package = list(path.relative_to(root).parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, False) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            found.append((node.lineno, node.module, False))
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - (node.level - 1)]
            if node.module:
                found.append((node.lineno, ".".join(base + [node.module]), True))
            else:                                    # `from .. import x`: x is a module of that package or a name in it
                found += [(node.lineno, ".".join(base + [alias.name]), True) for alias in node.names]
    return found


def python_files(root: Path) -> list[Path]:
    """Every .py file under root, outside hidden folders (.stylesmith holds the venv and the hosts)."""
    found = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith(".") and d != "__pycache__")
        found += [Path(folder) / f for f in sorted(files) if f.endswith(".py")]
    return found


def violations(root: Path) -> list[tuple[str, int, str, str]]:
    """(file, line, module, broken rule) for every import that breaks a rule; the rule is "devkit" or "ComfyUI"."""
    found = []
    for path in python_files(root):
        where = path.relative_to(root)
        top_folder = where.parts[0] if len(where.parts) > 1 else None      # None: the pack's entry, __init__.py
        for line, module, relative in imported_modules(path, root):
            top = module.split(".")[0]
            if top == "devkit" and (top_folder in SHIPPED or top_folder is None):
                found.append((where.as_posix(), line, module, "devkit"))
            if top in COMFYUI_MODULES and not relative and top_folder not in MAY_IMPORT_COMFYUI:
                found.append((where.as_posix(), line, module, "ComfyUI"))
    return found


def test_shipped_code_never_imports_devkit_and_only_comfy_adapter_imports_comfyui():
    found = violations(REPO_ROOT)
    assert not found, "\n".join(
        [f"{file}:{line} imports {module}: " + ("shipped code must not lean on the test harness (devkit)"
                                                if rule == "devkit" else "only comfy_adapter/ may import ComfyUI; "
                                                "add what is needed there")
         for file, line, module, rule in found])


@pytest.fixture
def planted(tmp_path) -> Path:
    """A small tree in the repository's shape, with one module per kind of import the rules judge."""
    files = {
        "__init__.py": "from .nodes import style_tokens\n",
        "nodes/__init__.py": "",
        "nodes/style_tokens.py": '"""import comfy; from devkit import paths"""\nfrom .. import core\nfrom .checks import x\n'
                                 "TEXT = 'import folder_paths'\n",
        "nodes/bad.py": "def late():\n    import folder_paths\n    from ..devkit import paths\n",
        "core/bad.py": "from devkit.tiny_models import build\nimport comfy.model_management as mm\n",
        "evaluation/bad.py": "from .. import devkit\n",
        "benchmarks/bad.py": "from devkit import paths\nfrom nodes import NODE_CLASS_MAPPINGS\n",
        "benchmarks/good.py": "from comfy_adapter.host import import_comfy\nfrom devkit import paths\n",
        "comfy_adapter/ok.py": "import comfy.sd\nimport folder_paths\n",
        "devkit/ok.py": "import execution\nimport nodes\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def test_planted_violations_are_each_found_and_nothing_else(planted):
    assert sorted(violations(planted)) == sorted([
        ("nodes/bad.py", 2, "folder_paths", "ComfyUI"), ("nodes/bad.py", 3, "devkit", "devkit"),
        ("core/bad.py", 1, "devkit.tiny_models", "devkit"), ("core/bad.py", 2, "comfy.model_management", "ComfyUI"),
        ("evaluation/bad.py", 1, "devkit", "devkit"),
        ("benchmarks/bad.py", 2, "nodes", "ComfyUI"),
    ])
