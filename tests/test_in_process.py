"""The in-process harness runs graphs on the real host, and the pack's import stays cheap."""
import json
import subprocess
import sys

import pytest
import torch

from devkit import paths
from devkit.paths import REPO_ROOT, make_base_dir
from devkit.tiny_models import TINY_CHECKPOINTS

pytestmark = pytest.mark.hosts


def test_nodes_module_is_comfyuis_not_the_packs(comfy_in_process):
    import nodes
    assert hasattr(nodes, "NODE_CLASS_MAPPINGS") and "KSampler" in nodes.NODE_CLASS_MAPPINGS
    assert not nodes.__file__.startswith(str(REPO_ROOT / "nodes"))


def test_in_process_graph_returns_node_outputs(comfy_in_process):
    prompt = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": TINY_CHECKPOINTS["sd15"]}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red house", "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "a blue boat", "clip": ["1", 1]}},
    }
    out = comfy_in_process.run(prompt, outputs_of=("2", "3"))
    (cond_a, extra_a), = out["2"][0]
    (cond_b, _), = out["3"][0]
    assert cond_a.shape == (1, 77, 768) and extra_a["pooled_output"].shape == (1, 768)
    assert cond_a.dtype == torch.float32, "tests compare numbers with the fp32 text encoder"
    assert not torch.equal(cond_a, cond_b)
    again = comfy_in_process.run(prompt, outputs_of=("2",))
    assert {"1", "2"} <= comfy_in_process.cached_nodes()
    assert torch.equal(again["2"][0][0][0], cond_a)


PROBE = """
import asyncio, json, sys, time
sys.path.append(sys.argv[1])
from comfy_adapter.host import import_comfy
import_comfy(base_directory=sys.argv[2])
import utils.extra_config, nodes
asyncio.run(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
before = set(sys.modules)
started = time.perf_counter()
ok = asyncio.run(nodes.load_custom_node(sys.argv[3], module_parent="custom_nodes"))
seconds = time.perf_counter() - started
print(json.dumps({"ok": ok, "seconds": seconds, "new": sorted(set(sys.modules) - before)}))
"""


def test_pack_import_is_cheap(tmp_path):
    base = make_base_dir(tmp_path)
    probe = subprocess.run([sys.executable, "-c", PROBE, str(REPO_ROOT), str(base),
                            str(base / "custom_nodes" / paths.PACK_FOLDER_NAME)],
                           capture_output=True, text=True, timeout=300)
    assert probe.returncode == 0, probe.stderr[-3000:]
    report = json.loads(probe.stdout.strip().splitlines()[-1])
    assert report["ok"]
    heavy = [m for m in report["new"] if m.split(".")[0] in ("open_clip", "timm", "transformers", "matplotlib")]
    assert heavy == [], f"the pack's import pulled in {heavy[:5]}: import them when a node first runs"
    assert report["seconds"] < 1.0, report
