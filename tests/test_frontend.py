"""The real ComfyUI frontend in headless Chromium: every bundled workflow loads from the Templates route
with every node known, no error or missing-node dialog, and the graph the file describes."""
import pytest

from devkit.browser import drop_workflow_png, frontend, load_workflow, registered_stylesmith_nodes
from devkit.node_docs import stylesmith_nodes
from devkit.workflows import ui_workflows

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def page(comfy_server):
    with frontend(comfy_server) as driver:
        yield driver


def test_frontend_registers_every_stylesmith_node(page, object_info):
    assert sorted(registered_stylesmith_nodes(page)) == sorted(stylesmith_nodes(object_info))


@pytest.mark.parametrize("name", sorted(ui_workflows()))
def test_workflow_loads_in_the_real_frontend(name, page, tmp_path):
    shown = load_workflow(page, name)
    assert shown.get("status") == 200 and "error" not in shown, shown
    assert shown["dialogs"] == [], f"the frontend opened a dialog: {shown['dialogs']}"
    assert shown["unregistered"] == [] and shown["with_errors"] == []
    assert sorted(shown["nodes"]) == sorted(node["type"] for node in ui_workflows()[name]["nodes"])
    screenshot = tmp_path / f"{name}.png"
    page.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 20_000, "the screenshot is (nearly) empty"


@pytest.mark.parametrize("name", sorted(ui_workflows()))
def test_dropping_the_workflow_png_loads_its_graph(name, page):
    shown = drop_workflow_png(page, name)
    assert shown.get("status") == 200 and "error" not in shown, shown
    assert shown["dialogs"] == []
    assert sorted(shown["nodes"]) == sorted(node["type"] for node in ui_workflows()[name]["nodes"])
