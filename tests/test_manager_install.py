"""Installed as ComfyUI-Manager installs a pack: `git clone` into custom_nodes, `pip install -r
requirements.txt`, start the host. Plus the Comfy Registry's required pyproject fields.

The clone is of this repository's committed HEAD (on CI, a clean clone: the same tree); the host is the
pinned ComfyUI with a fresh base directory that nothing else has touched.
"""
import re
import subprocess
import sys
import tomllib

import pytest

from devkit.node_docs import stylesmith_nodes
from devkit.paths import PACK_FOLDER_NAME, REPO_ROOT
from devkit.server import ComfyServer

REGISTRY_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]*([-_.][A-Za-z0-9]+)*$")


@pytest.mark.server
def test_git_clone_and_pip_install_load_every_node_without_import_errors(tmp_path, object_info):
    base = tmp_path / "fresh-base"
    for folder in ("custom_nodes", "models", "input", "output", "user"):
        (base / folder).mkdir(parents=True)
    pack = base / "custom_nodes" / PACK_FOLDER_NAME
    subprocess.run(["git", "clone", "--quiet", str(REPO_ROOT), str(pack)], check=True)
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "-r",
                                str(pack / "requirements.txt")], capture_output=True, text=True, check=False)
    assert installed.returncode == 0, installed.stderr[-2000:]
    assert not (pack / ".stylesmith").exists() and (pack / "__init__.py").is_file()
    with ComfyServer(base) as server:
        fresh = server.object_info()
        log = server.log_text()
        import_times = server.import_times()
    assert sorted(stylesmith_nodes(fresh)) == sorted(stylesmith_nodes(object_info))
    assert not [line for line in log.splitlines() if "IMPORT FAILED" in line and PACK_FOLDER_NAME in line], log[-3000:]
    assert [ok for path, (_, ok) in import_times.items() if PACK_FOLDER_NAME in path] == [True], import_times


def test_pyproject_has_what_the_comfy_registry_requires():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    meta, comfy = project["project"], project["tool"]["comfy"]
    assert REGISTRY_NAME.match(meta["name"]) and len(meta["name"]) < 100 and "comfyui" not in meta["name"].lower()
    assert re.fullmatch(r"\d+\.\d+\.\d+", meta["version"])
    assert meta["description"] and set(meta["license"]) <= {"file", "text"}
    assert meta["urls"]["Repository"].startswith("https://")
    assert comfy["PublisherId"] and comfy["DisplayName"] and comfy["Icon"].startswith("https://")
    assert (REPO_ROOT / comfy["Icon"].split("/main/", 1)[1]).is_file(), "the icon URL must point at a file in the repo"
    assert "torch" not in " ".join(meta["dependencies"]).replace("open_clip_torch", "")
    requirements = {re.split(r"[<>=!~ ]", line)[0].lower() for line in (REPO_ROOT / "requirements.txt").read_text().splitlines()
                    if line.strip() and not line.startswith("#")}
    assert requirements == {re.split(r"[<>=!~ ]", d)[0].lower() for d in meta["dependencies"]}, \
        "requirements.txt (what ComfyUI-Manager installs) and pyproject's dependencies (the Registry's) must agree"
