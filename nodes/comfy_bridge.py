"""The one place where StyleSmith touches ComfyUI objects: CLIP tokens, model management, folders, progress.

Everything here uses ComfyUI's public surfaces (comfy.sd.CLIP's tokenize/encode, ModelPatcher,
model_management, folder_paths, comfy.utils.ProgressBar), so a ComfyUI update breaks at most
this module.
"""
import os

import torch

import comfy.model_management
import comfy.model_patcher
import comfy.utils
import folder_paths

WEIGHT_SUFFIXES = {".safetensors", ".pt", ".pth", ".ckpt", ".bin"}  # pickles are listed so they can be refused clearly


def register_model_folder(name: str) -> None:
    """models/<name>, added after any path a user's extra_model_paths.yaml gave for <name>."""
    folder_paths.add_model_folder_path(name, os.path.join(folder_paths.models_dir, name))
    folder_paths.folder_names_and_paths[name][1].update(WEIGHT_SUFFIXES)


def model_files(name: str) -> list[str]:
    return folder_paths.get_filename_list(name)


def embeddings_folder() -> str:
    """The first models/embeddings folder: where ComfyUI looks up `embedding:NAME`."""
    return folder_paths.get_folder_paths("embeddings")[0]


def model_file_path(folder: str, file_name: str) -> str:
    path = folder_paths.get_full_path(folder, file_name)
    if path is None:
        raise FileNotFoundError(f"{file_name} is not in any models/{folder} folder "
                                f"({', '.join(folder_paths.get_folder_paths(folder))}). Put it there and refresh.")
    return path


# ---- text encoders -------------------------------------------------------------------------
def tokenize(clip, text: str) -> dict[str, list]:
    """ComfyUI's tokenisation with word ids: {"l": [[(token, weight, word_id), ...77], ...], ...}."""
    return clip.tokenize(text, return_word_ids=True)


def encode(clip, tokens: dict[str, list]) -> list:
    """Tokens -> CONDITIONING, exactly as ComfyUI's CLIPTextEncode encodes."""
    return clip.encode_from_tokens_scheduled(tokens)


# ---- LoRA ------------------------------------------------------------------------------------
def apply_lora(model, clip, tensors: dict, strength_model: float, strength_clip: float):
    """Patch clones of MODEL and CLIP with a LoRA exactly as ComfyUI's LoraLoader does."""
    import comfy.sd
    return comfy.sd.load_lora_for_models(model, clip, tensors, strength_model, strength_clip)


# ---- models under ComfyUI's model management ------------------------------------------------
def manage(module: torch.nn.Module) -> comfy.model_patcher.ModelPatcher:
    """Wrap a torch module so ComfyUI loads it to the GPU and offloads it like any other model."""
    return comfy.model_patcher.ModelPatcher(module, load_device=comfy.model_management.get_torch_device(),
                                            offload_device=comfy.model_management.unet_offload_device())


def load_to_device(patcher: comfy.model_patcher.ModelPatcher) -> torch.device:
    comfy.model_management.load_models_gpu([patcher])
    return patcher.load_device


# ---- progress and interrupt -----------------------------------------------------------------
def with_progress(items):
    """Iterate with a ComfyUI progress bar; stop with ComfyUI's interrupt when the user presses Cancel."""
    items = list(items)
    bar = comfy.utils.ProgressBar(len(items))
    for item in items:
        comfy.model_management.throw_exception_if_processing_interrupted()
        yield item
        bar.update(1)
