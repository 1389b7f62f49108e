"""The real ComfyUI frontend in headless Chromium: every bundled workflow loads from the Templates route
with every node known, no error or missing-node dialog, the graph the file describes and no node drawn over
another, and the prompt the frontend makes of it runs on the host (for the heavy Z-Image workflows: is the API twin
that test_workflows.py runs on this host, input for input, an input the twin leaves out at the host's default)."""
import pytest

from devkit.browser import drop_workflow_png, frontend, load_workflow, prompt_of_shown_graph, registered_stylesmith_nodes
from devkit.node_docs import stylesmith_nodes
from devkit.family_gate import workflow_params
from devkit.workflows import (HEAVY_FAMILIES, api_workflows, overlapping_boxes, prompt_differences, ui_workflows,
                              workflow_family)

pytestmark = [pytest.mark.server, pytest.mark.hosts]


@pytest.fixture(scope="module")
def page(comfy_server):
    with frontend(comfy_server) as driver:
        yield driver


def test_frontend_registers_every_stylesmith_node(page, object_info):
    assert sorted(registered_stylesmith_nodes(page)) == sorted(stylesmith_nodes(object_info))


@pytest.mark.parametrize("name", workflow_params(sorted(ui_workflows())))
def test_workflow_loads_in_the_real_frontend_and_runs(name, page, comfy_server, object_info, tmp_path):
    shown = load_workflow(page, name)
    assert shown.get("status") == 200 and "error" not in shown, shown
    assert shown["dialogs"] == [], f"the frontend opened a dialog: {shown['dialogs']}"
    assert shown["unregistered"] == [] and shown["with_errors"] == []
    assert sorted(shown["nodes"]) == sorted(node["type"] for node in ui_workflows()[name]["nodes"])
    assert overlapping_boxes(shown["boxes"]) == [], "nodes drawn over each other"
    screenshot = tmp_path / f"{name}.png"
    page.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 20_000, "the screenshot is (nearly) empty"
    prompt = prompt_of_shown_graph(page)
    if workflow_family(name) in HEAVY_FAMILIES:
        assert prompt_differences(prompt, api_workflows()[name], object_info) == []
        return
    result = comfy_server.run(prompt)
    assert result.status == "success" and result.images, f"the graph the frontend shows did not run: {result.error}"


@pytest.mark.parametrize("name", workflow_params(sorted(ui_workflows())))
def test_dropping_the_workflow_png_loads_its_graph(name, page):
    shown = drop_workflow_png(page, name)
    assert shown.get("status") == 200 and "error" not in shown, shown
    assert shown["dialogs"] == []
    assert sorted(shown["nodes"]) == sorted(node["type"] for node in ui_workflows()[name]["nodes"])
