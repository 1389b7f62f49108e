"""Every bundled workflow: the UI twin is loadable and laid out left to right, the API twin runs in the real host.
(That the UI twin is generated from the API twin is checked on the pinned host, in test_generated_files.py.)"""
import itertools
import json

import numpy as np
import pytest

from core.families import FAMILIES
from core.formats.osasis_style_file import load_osasis_style
from devkit.family_gate import workflow_params
from devkit.workflow_ablations import ablations
from devkit.workflow_pngs import PNG_DIR, embedded_graphs
from devkit.workflows import (api_workflows, check_ui_workflow, layout_problems, overlapping_boxes, ui_workflows,
                              unsupported_workflow, workflow_family)

pytestmark = [pytest.mark.server, pytest.mark.hosts]


def test_every_workflow_has_both_twins():
    assert api_workflows(), "no bundled workflows"
    assert set(api_workflows()) == set(ui_workflows())
    assert all(workflow_family(name) in FAMILIES for name in api_workflows()), "names end with their family's key"


def test_a_host_that_cannot_run_a_workflow_is_named_with_the_versions():
    """Its family's first ComfyUI, or more where the workflow needs more (Z-Image style tokens: not on 0.3.75)."""
    assert unsupported_workflow("style-tokens-zimage", (0, 3, 75)) == (
        "style-tokens-zimage: style tokens on Z-Image need a ComfyUI whose Qwen3 tokenizer reads `embedding:` (0.3.75 "
        "builds Z-Image's without an embeddings folder); it needs a ComfyUI newer than 0.3.75, this host is ComfyUI "
        "0.3.75")
    assert unsupported_workflow("style-tokens-zimage", (0, 3, 64)) == (
        "Z-Image needs ComfyUI 0.3.75 or newer; this host is ComfyUI 0.3.64")
    assert unsupported_workflow("style-tokens-zimage", (0, 33, 0)) is None
    assert unsupported_workflow("osasis-stylise-zimage", (0, 3, 75)).startswith(
        "osasis-stylise-zimage: mixing z_style into OSASIS Decode on Z-Image needs the \"double_block\" patches")
    assert unsupported_workflow("osasis-stylise-zimage", (0, 33, 0)) is None
    assert unsupported_workflow("style-tokens-klein", (0, 3, 75)).startswith("Flux.2 Klein 4B needs ComfyUI 0.9.2")
    assert unsupported_workflow("style-tokens-sd15", (0, 3, 64)) is None


@pytest.mark.parametrize("name", workflow_params(sorted(ui_workflows())))
def test_ui_workflow_uses_known_nodes_and_consistent_links(name, object_info):
    assert check_ui_workflow(ui_workflows()[name], object_info) == []


@pytest.mark.parametrize("name", workflow_params(sorted(ui_workflows())))
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


# Two saved images "differ" when their mean |difference| is at least half a grey level (of 255). A graph whose style is
# ignored computes the same numbers and saves the same bytes (0: the host is deterministic), and rounding noise moves
# a few pixels by one level (far below 0.5 on average); the smallest real effect measured on the tiny models is Klein's
# style tokens, 1.4 grey levels, then the OSASIS SPN at weight 0.1, 4.2.
DIFFERENT = 0.5


def grey_levels_apart(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).mean() * 255)


@pytest.mark.parametrize("name", workflow_params(sorted(api_workflows())))
def test_api_workflow_runs_and_every_picture_shows_its_style(name, comfy_server):
    """Every saved image varies (a NaN upstream saves a flat, black picture), differs from every other the workflow
    saves (a sweep, with and without a prompt), and changes when any one of the workflow's styles, LoRAs or SPNs is
    taken out (devkit.workflow_ablations)."""
    api = api_workflows()[name]
    result = comfy_server.run(api)
    assert result.status == "success", result.error
    assert result.images, "the workflow saved no image"
    for image, path in zip(result.images, result.image_paths):
        assert path.is_file()
        assert image.ndim == 3 and image.shape[2] == 3
        assert float(np.std(image)) > 2 / 255, f"{path.name} is flat: something upstream is NaN"
    for i, j in itertools.combinations(range(len(result.images)), 2):
        apart = grey_levels_apart(result.images[i], result.images[j])
        assert apart >= DIFFERENT, f"saved images {i} and {j} are the same ({apart:.3f} grey levels apart)"
    variants = ablations(api)
    assert variants, "the workflow has no style, LoRA or SPN to take out: add its node to devkit.workflow_ablations"
    for ablation, graph in variants.items():
        without = comfy_server.run(graph)
        assert without.status == "success", without.error
        assert len(without.images) == len(result.images)
        for i, (image, plain) in enumerate(zip(result.images, without.images)):
            apart = grey_levels_apart(image, plain)
            assert apart >= DIFFERENT, \
                f"saved image {i} is the same without the {ablation} ({apart:.3f} grey levels apart)"


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


@pytest.mark.parametrize("name", workflow_params(sorted(n for n, api in api_workflows().items() if osasis_schedules(api))))
def test_osasis_workflow_encodes_on_its_styles_training_schedule(name, tiny_models_dir):
    """Otherwise OSASIS Decode warns that the style comes out weaker (core/osasis/decode.py schedule_difference)."""
    for made, style_name in osasis_schedules(api_workflows()[name]):
        style = load_osasis_style(tiny_models_dir / "osasis" / style_name)
        assert made == (style.t0, style.steps, style.scheduler), (style_name, made)


@pytest.mark.parametrize("name", workflow_params(sorted(api_workflows())))
def test_workflow_png_carries_exactly_the_bundled_graph(name):
    ui, prompt = embedded_graphs(PNG_DIR / f"{name}.png")
    assert ui == ui_workflows()[name], f"workflows/png/{name}.png is stale: run python -m devkit.generate"
    executed = {node_id: {k: v for k, v in node.items() if k != "is_changed"} for node_id, node in prompt.items()}
    assert executed == api_workflows()[name], "the PNG's prompt is the API twin (ComfyUI adds only is_changed)"
