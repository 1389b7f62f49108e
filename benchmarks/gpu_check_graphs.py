"""The workflow side of `benchmarks.gpu_check`: bundled workflows on the check's models, with and without a result.

A bundled workflow (workflows/api) is pointed at the check's checkpoint, resolution, input images and files; then
each trained file is loaded by its own node in the first workflow of its trainer, and the same graph without the
file must give a different image. "Without" keeps everything else equal: a LoRA at strength 0 (its trigger words
stay in the prompt), an OSASIS decode without its style, the prompt's placeholder word as plain text instead of
style tokens or an embedding.
"""
import copy
from dataclasses import dataclass
from pathlib import Path

import torch

from core.families import UNET, get_family
from devkit.example_inputs import CONTENT_IMAGE, STYLE_REFERENCE, content_image, style_reference
from devkit.workflows import api_workflows

# Smallest mean absolute pixel change (images in [0, 1]) that counts as "the file changes the image". The graphs are
# deterministic, so without the file the change is exactly 0; this only rules out float noise.
EFFECT_TOLERANCE = 1e-5

INPUT_IMAGES = {CONTENT_IMAGE: content_image, STYLE_REFERENCE: style_reference}


def input_name(name: str, resolution: int) -> str:
    return f"gpu-check-{resolution}-{name}"


def write_input_images(input_dir: Path, resolution: int) -> None:
    """The bundled workflows' input images, drawn at the check's resolution."""
    for name, draw in INPUT_IMAGES.items():
        path = input_dir / input_name(name, resolution)
        if not path.is_file():
            draw(resolution).save(path)


def workflow_name(base: str, family: str) -> str | None:
    """The bundled workflow for `family` if there is one (style-tokens-sdxl); else, for a UNet family, the SD1.5 one,
    and for a transformer family (its own loaders, latent and text encoder) none."""
    workflows = api_workflows()
    if f"{base}-{family}" in workflows:
        return f"{base}-{family}"
    return f"{base}-sd15" if get_family(family).denoiser == UNET else None


def on_files(graph: dict, files: dict[str, str], resolution: int) -> dict:
    """A copy of a bundled workflow whose loaders take these files ({loader input, e.g. ckpt_name or unet_name:
    file name}) and whose empty latent is resolution pixels square."""
    graph = copy.deepcopy(graph)
    for node in graph.values():
        inputs = node["inputs"]
        inputs.update({name: value for name, value in files.items() if name in inputs})
        if node["class_type"].startswith("Empty") and "width" in inputs:
            inputs["width"] = inputs["height"] = resolution
    return graph


def for_model(graph: dict, files: dict[str, str], resolution: int) -> dict:
    """A bundled workflow on the check's files (`on_files`) and its input images drawn at the resolution."""
    graph = on_files(graph, files, resolution)
    for node in graph.values():
        if node["class_type"] == "LoadImage":
            node["inputs"]["image"] = input_name(node["inputs"]["image"], resolution)
    return graph


def set_inputs(graph: dict, class_type: str, **values) -> dict:
    graph = copy.deepcopy(graph)
    for node in graph.values():
        if node["class_type"] == class_type:
            node["inputs"].update(values)
    return graph


def replace_style_prompts(graph: dict, text) -> dict:
    """Every 'Prompt with Style Tokens' node becomes a stock CLIPTextEncode of text(its text, its placeholder)."""
    graph = copy.deepcopy(graph)
    for node_id, node in graph.items():
        if node["class_type"] == "StyleSmithEncodePromptWithStyle":
            inputs = node["inputs"]
            graph[node_id] = {"class_type": "CLIPTextEncode",
                              "inputs": {"text": text(inputs["text"], inputs["placeholder"]), "clip": inputs["clip"]}}
    return graph


def without_osasis_style(graph: dict) -> dict:
    graph = copy.deepcopy(graph)
    for node in graph.values():
        if node["class_type"] == "StyleSmithOsasisDecode":
            node["inputs"].pop("osasis_style")
    return graph


@dataclass(frozen=True)
class FileUse:
    """How a graph loads one kind of result file, and the same graph without it."""
    folder: str                      # ComfyUI models folder the file goes in

    def with_file(self, graph: dict, name: str) -> dict:
        match self.folder:
            case "embeddings":
                return replace_style_prompts(graph, lambda text, placeholder: text.replace(
                    placeholder, f"embedding:{Path(name).stem}"))
            case "style_encoders":
                return set_inputs(graph, "StyleSmithStyleEncoderLoader", encoder_name=name)
            case "loras":
                return set_inputs(graph, "StyleSmithStyleForgeLoraLoader", lora_name=name)
            case "osasis":
                return set_inputs(graph, "StyleSmithOsasisStyleLoader", style_name=name)
        raise KeyError(self.folder)

    def without_file(self, graph: dict, name: str) -> dict:
        match self.folder:
            case "embeddings" | "style_encoders":
                return replace_style_prompts(graph, lambda text, placeholder: text)
            case "loras":
                return set_inputs(self.with_file(graph, name), "StyleSmithStyleForgeLoraLoader",
                                  strength_model=0.0, strength_clip=0.0)
            case "osasis":
                return without_osasis_style(self.with_file(graph, name))
        raise KeyError(self.folder)


FILE_USES = {"embedding": FileUse("embeddings"), "style_encoder": FileUse("style_encoders"),
             "lora": FileUse("loras"), "osasis": FileUse("osasis")}


def image_node(graph: dict) -> str:
    """The node whose IMAGE the workflow's SaveImage saves."""
    saves = [node for node in graph.values() if node["class_type"] == "SaveImage"]
    if len(saves) != 1:
        raise ValueError(f"expected one SaveImage node, found {len(saves)}")
    return saves[0]["inputs"]["images"][0]


def run_image(host, graph: dict) -> torch.Tensor:
    """Run the graph (its SaveImage writes the PNG as in ComfyUI); return the saved IMAGE batch, checked finite."""
    node = image_node(graph)
    image = host.run(graph, outputs_of=(node,))[node][0]
    if not torch.isfinite(image).all():
        raise ValueError("the image holds NaN or inf")
    return image


def image_change(host, graph: dict, use: FileUse, file_name: str) -> float:
    """Mean absolute pixel difference between the graph with the file and without it."""
    with_file = run_image(host, use.with_file(graph, file_name))
    without = run_image(host, use.without_file(graph, file_name))
    if with_file.shape != without.shape:
        raise ValueError(f"images of shape {tuple(with_file.shape)} with the file, {tuple(without.shape)} without")
    return float((with_file.float() - without.float()).abs().mean())
