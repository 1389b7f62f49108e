"""Bundled workflows: API-format sources, generated UI-format twins, and their checks.

`workflows/api/<name>.json` (API format, what POST /prompt takes) is the source we edit.
`workflows/<name>.json` (UI format, drag-and-drop, listed in ComfyUI's Templates menu) is
generated from it with the host's /object_info, so the two never drift:

    python -m devkit.generate      # regenerates every UI twin (and the other generated files)
"""
import json

from core.families import get_family, unsupported_on_host, version_text

from . import paths

WORKFLOWS_DIR = paths.REPO_ROOT / "workflows"
API_DIR = WORKFLOWS_DIR / "api"
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
# Sizes in canvas pixels, as ComfyUI's frontend draws nodes: the title bar above a node's body, a row per slot;
# the frontend widens a node until its title fits.
NODE_WIDTH, COLUMN_GAP, NODE_GAP, TITLE_CHAR_WIDTH = 320, 60, 30, 8
TITLE_HEIGHT, SLOT_HEIGHT, WIDGET_HEIGHT, MULTILINE_HEIGHT, PREVIEW_HEIGHT = 30, 20, 24, 60, 220


def api_workflows() -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(API_DIR.glob("*.json"))}


def ui_workflows() -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(WORKFLOWS_DIR.glob("*.json"))}


def workflow_family(name: str) -> str:
    """The family a bundled workflow is made for: its name ends with the family's key ("style-tokens-klein")."""
    return name.rsplit("-", 1)[-1]


# Families whose tiny models are slow to run: ComfyUI detects Z-Image only at width 3840, so its tiny model has ~0.9B
# parameters (3.6 GB in fp32 on the CPU) and a run of one of its workflows takes up to tens of seconds.
# test_workflows.py runs each of their workflows with its ablations; the frontend test checks the prompt the frontend
# makes is that graph instead of running it again, and the busy-server test leaves them out.
HEAVY_FAMILIES = {"zimage"}


# Workflows that need more of the host than their family does: name -> (the newest ComfyUI that cannot run it, why).
NEEDS_NEWER_HOST = {
    "style-tokens-zimage": ((0, 3, 75), "style tokens on Z-Image need a ComfyUI whose Qwen3 tokenizer reads "
                                        "`embedding:` (0.3.75 builds Z-Image's without an embeddings folder)"),
    "osasis-stylise-zimage": ((0, 3, 75), "mixing z_style into OSASIS Decode on Z-Image needs the \"double_block\" "
                                          "patches ComfyUI's Lumina 2 model calls after each layer (0.3.75 and 0.3.64 "
                                          "have none), and its semantic codes need style tokens, which 0.3.75's "
                                          "Qwen3 tokenizer cannot read"),
}


def unsupported_workflow(name: str, host_version: tuple) -> str | None:
    """Why a ComfyUI of `host_version` cannot run this bundled workflow (naming the versions), or None when it can."""
    reason = unsupported_on_host(get_family(workflow_family(name)), host_version)
    if reason is None and name in NEEDS_NEWER_HOST and tuple(host_version) <= NEEDS_NEWER_HOST[name][0]:
        newest, why = NEEDS_NEWER_HOST[name]
        reason = (f"{name}: {why}; it needs a ComfyUI newer than {version_text(newest)}, this host is ComfyUI "
                  f"{version_text(host_version)}")
    return reason


def declared_default(info: dict, name: str):
    """The value the host gives an input the prompt leaves out: its declared default, a combo's first option."""
    spec = dict(_input_specs(info))[name]
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    return options.get("default", spec[0][0] if isinstance(spec[0], list) else None)


def prompt_differences(made: dict, api: dict, object_info: dict) -> list[str]:
    """Where a prompt the frontend made runs otherwise than the API twin: a node or input value that differs, or an
    input the twin leaves out set to other than the host's default for it (the frontend sends every widget)."""
    differences = [f"node {i} only in one of them" for i in sorted(made.keys() ^ api.keys())]
    for node_id in sorted(made.keys() & api.keys()):
        ours, theirs = api[node_id], made[node_id]
        if ours["class_type"] != theirs["class_type"]:
            differences.append(f"node {node_id}: {theirs['class_type']} for {ours['class_type']}")
            continue
        info = object_info[ours["class_type"]]
        for name in sorted(ours["inputs"].keys() | theirs["inputs"].keys()):
            expected = ours["inputs"][name] if name in ours["inputs"] else declared_default(info, name)
            if theirs["inputs"].get(name) != expected:
                differences.append(f"node {node_id} {name}: {theirs['inputs'].get(name)!r} for {expected!r}")
    return differences


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


LOADER, PROCESSING, OUTPUT = 0, 1, 2


def node_role(class_type: str, info: dict) -> int:
    """Where a node sits when the graph reads left to right: loaders, then encoders and sampling, then outputs."""
    if info.get("output_node"):
        return OUTPUT
    return LOADER if "Load" in class_type else PROCESSING


def _columns(api: dict, object_info: dict) -> dict[str, int]:
    """A column per node: loaders first (a loader fed by a loader one column right of it), then every other node
    one column right of all its inputs, then the outputs in the last column. So every link points right."""
    roles = {n: node_role(node["class_type"], object_info[node["class_type"]]) for n, node in api.items()}
    column: dict[str, int] = {}

    def visit(node_id):
        if node_id not in column:
            parents = [v[0] for v in api[node_id]["inputs"].values() if _is_link(v)]
            column[node_id] = 1 + max((visit(p) for p in parents), default=-1)
            if roles[node_id] != LOADER:
                loader_columns = 1 + max((column[n] for n in api if roles[n] == LOADER and n in column), default=-1)
                column[node_id] = max(column[node_id], loader_columns)
        return column[node_id]

    for node_id in sorted(api, key=lambda n: (roles[n], int(n))):   # loaders first: the others start right of them
        visit(node_id)
    last = 1 + max((c for n, c in column.items() if roles[n] != OUTPUT), default=-1)
    return {n: (max(last, c) if roles[n] == OUTPUT else c) for n, c in column.items()}


def node_height(info: dict, n_inputs: int) -> int:
    """The body height the frontend draws for a node (its title bar sits above it): a row per slot, a row per
    widget, more for multiline text and for an image preview."""
    specs = _input_specs(info)
    widgets = [s for _, s in specs if _is_widget(s)]
    options = [s[1] if len(s) > 1 and isinstance(s[1], dict) else {} for s in widgets]
    height = SLOT_HEIGHT * max(n_inputs, len(info["output"])) + WIDGET_HEIGHT * len(widgets) + 2 * SLOT_HEIGHT
    height += sum(MULTILINE_HEIGHT for o in options if o.get("multiline"))
    height += sum(WIDGET_HEIGHT + PREVIEW_HEIGHT for o in options if o.get("image_upload"))
    return height


def node_width(node: dict) -> int:
    title = node.get("_meta", {}).get("title") or node["class_type"]
    return max(NODE_WIDTH, TITLE_CHAR_WIDTH * len(title) + 2 * COLUMN_GAP)


def api_to_ui(api: dict, object_info: dict) -> dict:
    """Lay an API-format prompt out as a UI-format (litegraph 0.4) workflow, left to right by role (see _columns);
    each column stacks its nodes, in the order of their inputs' rows, with room for every title bar."""
    columns = _columns(api, object_info)
    lefts, x = {}, 0
    for column in sorted(set(columns.values())):
        lefts[column] = x
        x += max(node_width(api[n]) for n in api if columns[n] == column) + COLUMN_GAP
    tops: dict[int, int] = {}
    nodes, links = {}, []

    def parents_row(node_id):
        rows = [nodes[v[0]]["pos"][1] for v in api[node_id]["inputs"].values() if _is_link(v) and v[0] in nodes]
        return sum(rows) / len(rows) if rows else 0

    ordered = []
    for column in sorted(set(columns.values())):
        in_column = [n for n in api if columns[n] == column]
        ordered += sorted(in_column, key=lambda n: (parents_row(n), int(n)))
        for node_id in ordered[-len(in_column):]:
            node = api[node_id]
            info = object_info[node["class_type"]]
            inputs, widgets_values = [], []
            for name, spec in _input_specs(info):
                value = node["inputs"].get(name)
                if _is_widget(spec):
                    if _is_link(value):
                        inputs.append({"name": name, "type": spec[0] if isinstance(spec[0], str) else "COMBO",
                                       "widget": {"name": name}, "link": None})
                    if value is None or _is_link(value):
                        # the frontend sends every widget: one the API twin leaves out gets what the host would use
                        value = declared_default(info, name)
                    widgets_values += [value] + _extra_widget_values(spec)
                else:
                    inputs.append({"name": name, "type": spec[0], "link": None})
            height = node_height(info, len(inputs))
            top = tops.get(column, TITLE_HEIGHT)
            nodes[node_id] = {
                "id": int(node_id), "type": node["class_type"],
                "pos": [lefts[column], top], "size": [node_width(node), height],
                "flags": {}, "order": len(nodes),
                "mode": 0, "inputs": inputs,
                "outputs": [{"name": oname, "type": otype, "links": [], "slot_index": i}
                            for i, (otype, oname) in enumerate(zip(info["output"], info["output_name"]))],
                "properties": {"Node name for S&R": node["class_type"]},
                "widgets_values": widgets_values,
            }
            if "_meta" in node and node["_meta"].get("title"):
                nodes[node_id]["title"] = node["_meta"]["title"]
            tops[column] = top + height + TITLE_HEIGHT + NODE_GAP
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


def overlapping_boxes(boxes: dict) -> list[str]:
    """Pairs of nodes whose boxes overlap; boxes are {node: (x, y, width, height)} with the title bar included."""
    found = []
    names = sorted(boxes, key=str)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            (ax, ay, aw, ah), (bx, by, bw, bh) = boxes[a], boxes[b]
            if ax < bx + bw and bx < ax + aw and ay < by + bh and by < ay + ah:
                found.append(f"nodes {a} and {b} overlap")
    return found


def layout_problems(ui: dict, object_info: dict) -> list[str]:
    """What keeps a UI workflow from reading left to right by role: overlapping nodes, a link that points left,
    a loader right of a non-loader, an output left of a non-output."""
    nodes = {n["id"]: n for n in ui["nodes"]}
    problems = overlapping_boxes({i: (n["pos"][0], n["pos"][1] - TITLE_HEIGHT, n["size"][0], n["size"][1] + TITLE_HEIGHT)
                                  for i, n in nodes.items()})
    for link_id, src, _, dst, _, _ in ui["links"]:
        if nodes[src]["pos"][0] + nodes[src]["size"][0] >= nodes[dst]["pos"][0]:
            problems.append(f"link {link_id} from node {src} to node {dst} does not point right")
    roles = {i: node_role(n["type"], object_info[n["type"]]) for i, n in nodes.items()}
    for role, name in ((LOADER, "loader"), (OUTPUT, "output")):
        for i in (i for i in nodes if roles[i] == role):
            for j in (j for j in nodes if roles[j] != role):
                left, right = (i, j) if role == LOADER else (j, i)
                if nodes[left]["pos"][0] >= nodes[right]["pos"][0]:
                    problems.append(f"{name} node {i} is not {'left' if role == LOADER else 'right'} of node {j}")
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
