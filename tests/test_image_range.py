"""The IMAGE rule on the real server: every StyleSmith node that takes an IMAGE refuses non-finite pixels and pixels
far outside [0, 1] (naming itself and the likely cause), and clamps a small resampling overshoot.

The spoiled images come from the harness pack's HarnessImageValues node, placed between the graph's LoadImage and
the node under test, as a foreign node's bug would sit there.
"""
import copy
import json

import numpy as np
import pytest

from devkit.workflows import api_workflows

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"), pytest.mark.hosts, pytest.mark.server]

# Where each StyleSmith node with an IMAGE input runs in a bundled graph: node type -> (workflow, node id).
IMAGE_NODES = {"StyleSmithImageToStyleTokens": ("style-tokens-sd15", "4"),
               "StyleSmithOsasisSemanticEncode": ("osasis-stylise-sd15", "7")}

SPOILED = {"one NaN pixel": (dict(spoil="nan"), "the image holds 1 NaN or infinite pixel value(s)"),
           "one inf pixel": (dict(spoil="inf"), "the image holds 1 NaN or infinite pixel value(s)"),
           "0-255 pixels": (dict(scale=255.0), "gives 0-255 pixel values; divide them by 255"),
           "-1 to 1 pixels": (dict(scale=2.0, offset=-1.0), "gives -1 to 1 values")}


def spoiled(node_type: str, **values):
    """The node's bundled graph with HarnessImageValues(image, **values) feeding its image input."""
    workflow, node_id = IMAGE_NODES[node_type]
    api = copy.deepcopy(api_workflows()[workflow])
    inputs = dict(image=api[node_id]["inputs"]["image"], scale=1.0, offset=0.0, spoil="none", clamp=False)
    api["90"] = {"class_type": "HarnessImageValues", "inputs": {**inputs, **values}}
    api[node_id]["inputs"]["image"] = ["90", 0]
    return api


def image_inputs(object_info) -> list[str]:
    ours = {n: i for n, i in object_info.items() if i["python_module"].endswith("ComfyUI-StyleSmith")}
    return sorted(node for node, info in ours.items() for section in ("required", "optional")
                  for spec in info["input"].get(section, {}).values() if spec[0] == "IMAGE")


def test_every_image_node_is_covered(object_info):
    """A node with a new IMAGE input fails here until IMAGE_NODES says where it runs."""
    assert image_inputs(object_info) == sorted(IMAGE_NODES)


@pytest.mark.parametrize("case", sorted(SPOILED))
@pytest.mark.parametrize("node_type", sorted(IMAGE_NODES))
def test_spoiled_image_is_refused_naming_node_and_cause(node_type, case, comfy_server, object_info):
    values, message = SPOILED[case]
    result = comfy_server.run(spoiled(node_type, **values))
    assert result.status == "error", f"{node_type} ran on an image with {case}"
    shown = result.error["exception_message"]
    assert shown.startswith(f"{object_info[node_type]['display_name']}: ") and message in shown, shown
    assert comfy_server.process.poll() is None, "the server died"


@pytest.mark.parametrize("node_type", sorted(IMAGE_NODES))
def test_resampling_overshoot_is_clamped(node_type, comfy_server):
    """Pixels in [-0.2, 1.2] (as bicubic resampling leaves them) give the same picture as the same pixels clamped."""
    overshoot = comfy_server.run(spoiled(node_type, scale=1.4, offset=-0.2))
    clamped = comfy_server.run(spoiled(node_type, scale=1.4, offset=-0.2, clamp=True))
    assert overshoot.status == clamped.status == "success", json.dumps(overshoot.error or clamped.error)[:2000]
    assert len(overshoot.images) == len(clamped.images) >= 1
    for a, b in zip(overshoot.images, clamped.images):
        np.testing.assert_array_equal(a, b)
