"""benchmarks.style_tokens times a bundled style-tokens workflow against itself with a plain prompt: the two graphs
must differ only where the prompt is read (the sampler's positive, and the DiT workflows' zeroed negative made from
it), or the ratio would time something else."""
import pytest

from benchmarks.style_tokens import PLAIN_PROMPT, STYLE_PROMPT, graphs, parse_args
from devkit.workflows import api_workflows

WORKFLOWS = sorted(name for name in api_workflows() if name.startswith("style-tokens-") and len(name.split("-")) == 3)


@pytest.mark.parametrize("workflow", WORKFLOWS)
def test_plain_and_style_graphs_differ_only_in_the_prompt_they_read(workflow):
    plain, style, image = graphs(workflow, {"unet_name": "full.safetensors"}, 128, 3)
    assert plain.keys() == style.keys() and image in style
    assert not [n for n in style.values() if n["class_type"] == "SaveImage"]
    (style_id,) = [i for i, n in style.items() if n["class_type"] == STYLE_PROMPT]
    changed = {(i, name) for i in style for name in style[i]["inputs"] if plain[i]["inputs"][name] !=
               style[i]["inputs"][name]}
    assert all(style[i]["inputs"][name] == [style_id, 0] and plain[i]["inputs"][name] == [PLAIN_PROMPT, 0]
               for i, name in changed)
    (sampler_id,) = [i for i, n in style.items() if n["class_type"] == "KSampler"]
    assert (sampler_id, "positive") in changed
    assert plain[PLAIN_PROMPT] == {"class_type": "CLIPTextEncode", "inputs": {
        "text": style[style_id]["inputs"]["text"], "clip": style[style_id]["inputs"]["clip"]}}
    assert style[sampler_id]["inputs"]["steps"] == 3
    assert [(n["inputs"]["width"], n["inputs"]["height"]) for n in style.values()
            if n["class_type"].startswith("Empty")] == [(128, 128)]
    assert [n["inputs"]["unet_name"] for n in style.values() if "unet_name" in n["inputs"]] == (
        ["full.safetensors"] if workflow.split("-")[-1] not in ("sd15", "sdxl") else [])


def test_the_workflow_names_the_family_and_its_full_size():
    assert (parse_args(["--workflow", "style-tokens-klein", "--full-size"]).size,
            parse_args(["--full-size"]).size, parse_args([]).size) == (1024, 512, 64)
