"""The ComfyUI text-encoder options a text-encoder file asks to be built with (metadata `stylesmith.comfy_model_options`).

ComfyUI builds an LLM text encoder such as Qwen3-4B from a fixed config and only then loads the file's tensors, so a
shrunk encoder (the test harness's tiny Qwen3-4B: 28 layers of width 2560 with one head and a 64-wide MLP) loads only
when `model_options["qwen3_4b_model_config"]` says its shape (comfy/sd1_clip.py merges `<name>_model_config` into the
config). Such a file records those options in its metadata; the trainer-side loader passes them to
`comfy.sd.load_clip`, and the test harness's custom node pack (devkit/harness_pack) passes them for stock CLIPLoader
graphs. A real encoder file has no such key and needs nothing.
"""
import json
import re

from safetensors import safe_open

from .safe_files import check_safetensors_file, reading_metadata

METADATA_KEY = "stylesmith.comfy_model_options"
_OPTION_NAME = re.compile(r"^[a-z0-9_]+_model_config$")   # only encoder configs: never devices, dtypes or operations


def model_options_metadata(options: dict) -> dict[str, str]:
    """The metadata entry that makes `text_encoder_model_options` return `options` for a file."""
    _check(options)
    return {METADATA_KEY: json.dumps(options, sort_keys=True)}


def text_encoder_model_options(path) -> dict:
    """The ComfyUI model_options a text-encoder file records ({"qwen3_4b_model_config": {...}}), or {} when it
    records none (every real encoder file)."""
    path = check_safetensors_file(path, "text encoder")
    with safe_open(str(path), framework="pt", device="cpu") as f:
        metadata = f.metadata() or {}
    if METADATA_KEY not in metadata:
        return {}
    with reading_metadata(path, "text encoder"):
        options = json.loads(metadata[METADATA_KEY])
        _check(options)
    return options


def _check(options) -> None:
    if not isinstance(options, dict):
        raise TypeError(f"{METADATA_KEY} must be a JSON object of encoder configs, not {type(options).__name__}")
    for name, config in options.items():
        if not _OPTION_NAME.match(name):
            raise ValueError(f"{METADATA_KEY} may hold only '<encoder>_model_config' entries, not {name!r}")
        if not isinstance(config, dict) or not all(
                isinstance(k, str) and isinstance(v, (int, float, str, bool)) for k, v in config.items()):
            raise ValueError(f"{METADATA_KEY}[{name!r}] must map config field names to numbers, strings or booleans")
