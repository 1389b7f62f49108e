"""Files generated from the pinned host are current: docs/nodes.md (every node documented there and in the README)
and the UI twins of the workflows.

The committed files are the pinned host's. The host lane does not run this module: other hosts' /object_info
differ in ways that change the generated text (from 0.26 SaveImage has an IMAGE output). There the UI twins are
checked by loading and running them (test_workflows.py, test_frontend.py).
"""
import json

import pytest

from devkit.node_docs import NODES_DOC, nodes_markdown, stylesmith_nodes
from devkit.paths import REPO_ROOT
from devkit.workflows import _extra_widget_values, _input_specs, _is_widget, api_to_ui, api_workflows, ui_workflows

pytestmark = pytest.mark.server


def test_nodes_doc_is_current(object_info):
    assert NODES_DOC.read_text() == nodes_markdown(object_info), \
        "docs/nodes.md is stale: run python -m devkit.generate"


def test_every_node_has_a_section_with_its_inputs_and_outputs(object_info):
    doc = NODES_DOC.read_text()
    nodes = stylesmith_nodes(object_info)
    assert len(nodes) >= 11
    for name, info in nodes.items():
        assert f"(`{name}`)" in doc
        section = doc.split(f"(`{name}`)", 1)[1].split("\n### ", 1)[0]
        for kind in ("required", "optional"):
            for input_name in info["input"].get(kind, {}):
                assert f"`{input_name}`" in section, f"{name}.{input_name} missing from docs/nodes.md"
        assert section.count("| output |") == len(info["output"])


def test_readme_names_every_node(object_info):
    readme = (REPO_ROOT / "README.md").read_text()
    missing = [info["display_name"] for info in stylesmith_nodes(object_info).values() if info["display_name"] not in readme]
    assert not missing, f"README.md does not mention {missing}"


@pytest.mark.parametrize("name", sorted(api_workflows()))
def test_ui_workflow_is_generated_from_its_api_twin(name, object_info):
    expected = api_to_ui(api_workflows()[name], object_info)
    assert ui_workflows()[name] == json.loads(json.dumps(expected)), \
        f"workflows/{name}.json is stale: run python -m devkit.generate"


def widget_values(node: dict, info: dict) -> dict:
    """{widget name: the value a UI-format node stores for it}, skipping the values the frontend keeps after some
    widgets (seed control, image upload)."""
    values, position = {}, 0
    for name, spec in _input_specs(info):
        if _is_widget(spec):
            values[name] = node["widgets_values"][position]
            position += 1 + len(_extra_widget_values(spec))
    return values


@pytest.mark.parametrize("name", sorted(ui_workflows()))
def test_ui_workflow_gives_every_unlinked_widget_a_value(name, object_info):
    """The frontend sends every widget that no link feeds: a None where the API twin leaves an input out (CLIPLoader's
    device) reaches the server, and ComfyUI 0.3.75 refuses it ("device: 'None' not in ['default', 'cpu']")."""
    unset = []
    for node in ui_workflows()[name]["nodes"]:
        linked = {i["name"] for i in node["inputs"] if "widget" in i and i["link"] is not None}
        unset += [f"node {node['id']} {widget}" for widget, value in
                  widget_values(node, object_info[node["type"]]).items() if value is None and widget not in linked]
    assert not unset, f"workflows/{name}.json leaves {unset} at None: run python -m devkit.generate"
