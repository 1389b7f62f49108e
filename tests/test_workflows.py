"""Every bundled workflow: the UI twin is loadable and laid out left to right, the API twin runs in the real host.
(That the UI twin is generated from the API twin is checked on the pinned host, in test_generated_files.py.)"""
import json

import numpy as np
import pytest

from core.families import FAMILIES
from core.formats.osasis_style_file import load_osasis_style
from devkit.family_gate import family_params
from devkit.workflow_pngs import PNG_DIR, embedded_graphs
from devkit.workflows import (api_workflows, check_ui_workflow, layout_problems, overlapping_boxes, ui_workflows,
                              workflow_family)

pytestmark = [pytest.mark.server, pytest.mark.hosts]


def test_every_workflow_has_both_twins():
    assert api_workflows(), "no bundled workflows"
    assert set(api_workflows()) == set(ui_workflows())
    assert all(workflow_family(name) in FAMILIES for name in api_workflows()), "names end with their family's key"


@pytest.mark.parametrize("name", family_params(sorted(ui_workflows()), workflow_family))
def test_ui_workflow_uses_known_nodes_and_consistent_links(name, object_info):
    assert check_ui_workflow(ui_workflows()[name], object_info) == []


@pytest.mark.parametrize("name", family_params(sorted(ui_workflows()), workflow_family))
def test_ui_workflow_reads_left_to_right_without_overlaps(name, object_info):
    assert layout_problems(ui_workflows()[name], object_info) == []


def test_layout_check_catches_overlaps_and_backward_links(object_info):
    ui = json.loads(json.dumps(ui_workflows()["osasis-stylise-sd15"]))
    loader, output = ui["nodes"][0], next(n for n in ui["nodes"] if n["type"] == "SaveImage")
    output["pos"] = list(loader["pos"])
    problems = layout_problems(ui, object_info)
    assert f"nodes {min(loader['id'], output['id'])} and {max(loader['id'], output['id'])} overlap" in problems
    assert any(f"to node {output['id']} does not point right" in p for p in problems)
    assert any(f"output node {output['id']} is not right of" in p for p in problems)
    assert overlapping_boxes({"a": (0, 0, 10, 10), "b": (10, 0, 10, 10)}) == []


def test_check_ui_workflow_catches_a_broken_link(object_info):
    ui = json.loads(json.dumps(next(iter(ui_workflows().values()))))
    ui["links"][0][5] = "LATENT" if ui["links"][0][5] != "LATENT" else "IMAGE"
    ui["nodes"][0]["type"] = "NoSuchNode"
    problems = check_ui_workflow(ui, object_info)
    assert any("NoSuchNode" in p for p in problems)
    assert any(f"link {ui['links'][0][0]}" in p for p in problems)


@pytest.mark.parametrize("name", family_params(sorted(api_workflows()), workflow_family))
def test_api_workflow_runs_and_writes_pictures_that_differ(name, comfy_server):
    """A NaN anywhere upstream reaches SaveImage as a flat (black) picture, so every saved image must vary; and
    a workflow that saves several (with and without a style, a sweep) must not save the same one throughout."""
    result = comfy_server.run(api_workflows()[name])
    assert result.status == "success", result.error
    assert result.images, "the workflow saved no image"
    for image, path in zip(result.images, result.image_paths):
        assert path.is_file()
        assert image.ndim == 3 and image.shape[2] == 3
        assert float(np.std(image)) > 2 / 255, f"{path.name} is flat: something upstream is NaN"
    if len(result.images) > 1:
        assert len({np.asarray(image).tobytes() for image in result.images}) > 1, "every saved image is the same"


def osasis_schedules(api: dict) -> list[tuple[tuple, str]]:
    """((t0, steps, scheduler) of the Structural Encode, style file) for every OSASIS Decode fed by both."""
    pairs = []
    for node in api.values():
        inputs = node["inputs"]
        if node["class_type"] == "StyleSmithOsasisDecode" and "osasis_style" in inputs:
            encode = api[inputs["structure"][0]]["inputs"]
            style = api[inputs["osasis_style"][0]]["inputs"]["style_name"]
            pairs.append(((encode["t0"], encode["steps"], encode["scheduler"]), style))
    return pairs


@pytest.mark.parametrize("name", family_params(sorted(n for n, api in api_workflows().items() if osasis_schedules(api)),
                                               workflow_family))
def test_osasis_workflow_encodes_on_its_styles_training_schedule(name, tiny_models_dir):
    """Otherwise OSASIS Decode warns that the style comes out weaker (core/osasis/decode.py schedule_difference)."""
    for made, style_name in osasis_schedules(api_workflows()[name]):
        style = load_osasis_style(tiny_models_dir / "osasis" / style_name)
        assert made == (style.t0, style.steps, style.scheduler), (style_name, made)


@pytest.mark.parametrize("name", family_params(sorted(api_workflows()), workflow_family))
def test_workflow_png_carries_exactly_the_bundled_graph(name):
    ui, prompt = embedded_graphs(PNG_DIR / f"{name}.png")
    assert ui == ui_workflows()[name], f"workflows/png/{name}.png is stale: run python -m devkit.generate"
    executed = {node_id: {k: v for k, v in node.items() if k != "is_changed"} for node_id, node in prompt.items()}
    assert executed == api_workflows()[name], "the PNG's prompt is the API twin (ComfyUI adds only is_changed)"
