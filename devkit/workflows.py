"""Bundled workflows: API-format sources, generated UI-format twins, and their checks.

`workflows/api/<name>.json` (API format, what POST /prompt takes) is the source we edit.
`workflows/<name>.json` (UI format, drag-and-drop, listed in ComfyUI's Templates menu) is
generated from it with the host's /object_info, so the two never drift:

    python -m devkit.generate      # regenerates every UI twin (and the other generated files)
"""
import json

from . import paths

WORKFLOWS_DIR = paths.REPO_ROOT / "workflows"
API_DIR = WORKFLOWS_DIR / "api"
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
COLUMN_WIDTH, ROW_HEIGHT, NODE_WIDTH = 360, 40, 320


def api_workflows() -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(API_DIR.glob("*.json"))}


def ui_workflows() -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(WORKFLOWS_DIR.glob("*.json"))}


def _is_link(value) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int)


def _input_specs(info: dict) -> list[tuple[str, list]]:
    """(name, spec) for every declared input, in the order the frontend lays out widgets."""
    specs = []
    order = info.get("input_order", {})
    for section in ("required", "optional"):
        declared = info["input"].get(section, {})
        for name in order.get(section, list(declared)):
            specs.append((name, declared[name]))
    return specs


def _is_widget(spec: list) -> bool:
    return isinstance(spec[0], list) or spec[0] in WIDGET_TYPES


def _extra_widget_values(spec: list) -> list:
    """Values the frontend stores after a widget: seed control, the image upload button."""
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    extra = []
    if options.get("control_after_generate"):
        extra.append("fixed")
    if options.get("image_upload"):
        extra.append("image")
    return extra


def _depths(api: dict) -> dict[str, int]:
    depth = {}

    def visit(node_id):
        if node_id not in depth:
            parents = [v[0] for v in api[node_id]["inputs"].values() if _is_link(v)]
            depth[node_id] = 1 + max((visit(p) for p in parents), default=-1)
        return depth[node_id]

    for node_id in api:
        visit(node_id)
    return depth


def api_to_ui(api: dict, object_info: dict) -> dict:
    """Lay an API-format prompt out as a UI-format (litegraph 0.4) workflow, columns by depth."""
    depth = _depths(api)
    rows: dict[int, int] = {}
    nodes, links = {}, []
    for order, node_id in enumerate(sorted(api, key=lambda n: (depth[n], int(n)))):
        node = api[node_id]
        info = object_info[node["class_type"]]
        row = rows.get(depth[node_id], 0)
        inputs, widgets_values = [], []
        for name, spec in _input_specs(info):
            value = node["inputs"].get(name)
            if _is_widget(spec):
                if _is_link(value):
                    inputs.append({"name": name, "type": spec[0] if isinstance(spec[0], str) else "COMBO",
                                   "widget": {"name": name}, "link": None})
                    value = spec[1].get("default") if len(spec) > 1 and isinstance(spec[1], dict) else None
                widgets_values += [value] + _extra_widget_values(spec)
            else:
                inputs.append({"name": name, "type": spec[0], "link": None})
        n_widgets = sum(1 for _, s in _input_specs(info) if _is_widget(s))
        height = 60 + ROW_HEIGHT // 2 * (len(inputs) + len(info["output"])) + 26 * n_widgets
        nodes[node_id] = {
            "id": int(node_id), "type": node["class_type"],
            "pos": [depth[node_id] * COLUMN_WIDTH, row], "size": [NODE_WIDTH, height],
            "flags": {}, "order": order, "mode": 0, "inputs": inputs,
            "outputs": [{"name": oname, "type": otype, "links": [], "slot_index": i}
                        for i, (otype, oname) in enumerate(zip(info["output"], info["output_name"]))],
            "properties": {"Node name for S&R": node["class_type"]},
            "widgets_values": widgets_values,
        }
        if "_meta" in node and node["_meta"].get("title"):
            nodes[node_id]["title"] = node["_meta"]["title"]
        rows[depth[node_id]] = row + height + ROW_HEIGHT
    for node_id, node in api.items():
        for slot_index, slot in enumerate(nodes[node_id]["inputs"]):
            value = node["inputs"].get(slot["name"])
            if not _is_link(value):
                continue
            source, source_slot = value
            link_id = len(links) + 1
            link_type = nodes[source]["outputs"][source_slot]["type"]
            links.append([link_id, int(source), source_slot, int(node_id), slot_index, link_type])
            slot["link"] = link_id
            nodes[source]["outputs"][source_slot]["links"].append(link_id)
    return {"last_node_id": max(int(n) for n in api), "last_link_id": len(links),
            "nodes": [nodes[n] for n in sorted(nodes, key=int)], "links": links, "groups": [],
            "config": {}, "extra": {"ds": {"scale": 1.0, "offset": [0, 0]}}, "version": 0.4}


def check_ui_workflow(ui: dict, object_info: dict) -> list[str]:
    """Every problem that would stop the frontend loading the graph: unknown nodes, bad links."""
    problems = []
    nodes = {n["id"]: n for n in ui["nodes"]}
    for node in ui["nodes"]:
        if node["type"] not in object_info:
            problems.append(f"node {node['id']}: type {node['type']!r} is not in /object_info")
    for link_id, src, src_slot, dst, dst_slot, link_type in ui["links"]:
        if src not in nodes or dst not in nodes:
            problems.append(f"link {link_id}: joins missing node {src} -> {dst}")
            continue
        outputs, inputs = nodes[src]["outputs"], nodes[dst]["inputs"]
        if src_slot >= len(outputs) or link_id not in (outputs[src_slot]["links"] or []):
            problems.append(f"link {link_id}: output slot {src_slot} of node {src} does not list it")
        elif outputs[src_slot]["type"] != link_type:
            problems.append(f"link {link_id}: type {link_type} but output is {outputs[src_slot]['type']}")
        if dst_slot >= len(inputs) or inputs[dst_slot]["link"] != link_id:
            problems.append(f"link {link_id}: input slot {dst_slot} of node {dst} does not hold it")
        elif inputs[dst_slot]["type"] not in (link_type, "*") and link_type != "*":
            problems.append(f"link {link_id}: {link_type} into {inputs[dst_slot]['type']} input")
        if nodes[src]["type"] in object_info and object_info[nodes[src]["type"]]["output"][src_slot] != link_type:
            problems.append(f"link {link_id}: host says output {src_slot} of {nodes[src]['type']} is not {link_type}")
    link_ids = {link[0] for link in ui["links"]}
    for node in ui["nodes"]:
        for slot in node["inputs"]:
            if slot["link"] is not None and slot["link"] not in link_ids:
                problems.append(f"node {node['id']}: input {slot['name']} names missing link {slot['link']}")
        for slot in node["outputs"]:
            for link_id in slot["links"] or []:
                if link_id not in link_ids:
                    problems.append(f"node {node['id']}: output {slot['name']} names missing link {link_id}")
    if ui.get("last_link_id", 0) < max(link_ids, default=0):
        problems.append("last_link_id is below the largest link id")
    return problems


def generate(server) -> list:
    """Write every UI twin from its API source, with the running host's /object_info."""
    object_info = server.object_info()
    written = []
    for name, api in api_workflows().items():
        out = WORKFLOWS_DIR / f"{name}.json"
        out.write_text(json.dumps(api_to_ui(api, object_info), indent=1) + "\n")
        written.append(out)
    return written
