"""Every bundled workflow: the UI twin is current and loadable, the API twin runs in the real host."""
import json

import numpy as np
import pytest

from devkit.workflow_pngs import PNG_DIR, embedded_graphs
from devkit.workflows import api_to_ui, api_workflows, check_ui_workflow, ui_workflows

pytestmark = pytest.mark.server


def test_every_workflow_has_both_twins():
    assert api_workflows(), "no bundled workflows"
    assert set(api_workflows()) == set(ui_workflows())


@pytest.mark.parametrize("name", sorted(ui_workflows()))
def test_ui_workflow_uses_known_nodes_and_consistent_links(name, object_info):
    assert check_ui_workflow(ui_workflows()[name], object_info) == []


@pytest.mark.parametrize("name", sorted(api_workflows()))
def test_ui_workflow_is_generated_from_its_api_twin(name, object_info):
    expected = api_to_ui(api_workflows()[name], object_info)
    assert ui_workflows()[name] == json.loads(json.dumps(expected)), \
        f"workflows/{name}.json is stale: run python -m devkit.generate"


def test_check_ui_workflow_catches_a_broken_link(object_info):
    ui = json.loads(json.dumps(next(iter(ui_workflows().values()))))
    ui["links"][0][5] = "LATENT" if ui["links"][0][5] != "LATENT" else "IMAGE"
    ui["nodes"][0]["type"] = "NoSuchNode"
    problems = check_ui_workflow(ui, object_info)
    assert any("NoSuchNode" in p for p in problems)
    assert any(f"link {ui['links'][0][0]}" in p for p in problems)


@pytest.mark.parametrize("name", sorted(api_workflows()))
def test_api_workflow_runs_and_writes_finite_images(name, comfy_server):
    result = comfy_server.run(api_workflows()[name])
    assert result.status == "success", result.error
    assert result.images, "the workflow saved no image"
    for image, path in zip(result.images, result.image_paths):
        assert path.is_file()
        assert image.ndim == 3 and image.shape[2] == 3
        assert np.isfinite(image).all()


@pytest.mark.parametrize("name", sorted(api_workflows()))
def test_workflow_png_carries_exactly_the_bundled_graph(name):
    ui, prompt = embedded_graphs(PNG_DIR / f"{name}.png")
    assert ui == ui_workflows()[name], f"workflows/png/{name}.png is stale: run python -m devkit.generate"
    executed = {node_id: {k: v for k, v in node.items() if k != "is_changed"} for node_id, node in prompt.items()}
    assert executed == api_workflows()[name], "the PNG's prompt is the API twin (ComfyUI adds only is_changed)"
