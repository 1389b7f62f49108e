"""The test harness's own ComfyUI custom node pack: stock text-encoder loaders build the shrunk tiny encoders.

ComfyUI's CLIPLoader and DualCLIPLoader pass no text-encoder size options, and a shrunk Qwen3-4B (or T5) loads only
with `model_options["<name>_model_config"]`. This pack wraps `comfy.sd.load_clip`, which both loaders call, once:
the options each .safetensors file records under `stylesmith.comfy_model_options` (read by the one reader,
core.formats.text_encoder_options) are added to the model_options the caller passes (the caller's own win). A file
that records none, every real encoder, loads exactly as without this pack. The graphs stay stock.

It lives in the test and demo base directories only (devkit/paths.make_base_dir and scripts/setup.sh link it into
custom_nodes as `StyleSmith-Harness`, next to the pack); the server harness and devkit/in_process.py load it as
ComfyUI loads any pack. StyleSmith itself never imports it. Its one node, HarnessImageValues (image_values.py), makes
the out-of-range and non-finite IMAGEs a foreign node's bug would, for the server tests of the image rule; its one
route, GET /stylesmith-harness/loaded-models (loaded_models.py), lists the models ComfyUI holds loaded.
"""
import functools
import importlib
import importlib.util
import inspect
import sys
from pathlib import Path

import comfy.sd

from .image_values import HarnessImageValues
from .loaded_models import register_route

NODE_CLASS_MAPPINGS = {"HarnessImageValues": HarnessImageValues}
_CORE_ALIAS = "stylesmith_harness_core"


def _text_encoder_options_module():
    """core.formats.text_encoder_options of this repository, imported as a package of its own (this pack is loaded
    from custom_nodes/, where the repository's `core` is not importable by that name)."""
    if _CORE_ALIAS not in sys.modules:
        core = Path(__file__).resolve().parents[2] / "core"
        spec = importlib.util.spec_from_file_location(_CORE_ALIAS, core / "__init__.py",
                                                      submodule_search_locations=[str(core)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[_CORE_ALIAS] = module
        spec.loader.exec_module(module)
    return importlib.import_module(f"{_CORE_ALIAS}.formats.text_encoder_options")


def with_recorded_options(load_clip):
    """comfy.sd.load_clip, adding the options its .safetensors files record to model_options."""
    if getattr(load_clip, "stylesmith_harness", False):
        return load_clip
    read_options = _text_encoder_options_module().text_encoder_model_options
    signature = inspect.signature(load_clip)

    @functools.wraps(load_clip)
    def load_clip_with_recorded_options(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        recorded = {}
        for path in bound.arguments["ckpt_paths"]:
            if str(path).endswith(".safetensors"):
                recorded.update(read_options(path))
        if recorded:
            bound.arguments["model_options"] = {**recorded, **bound.arguments.get("model_options", {})}
        return load_clip(*bound.args, **bound.kwargs)

    load_clip_with_recorded_options.stylesmith_harness = True
    return load_clip_with_recorded_options


comfy.sd.load_clip = with_recorded_options(comfy.sd.load_clip)
register_route()
