"""Whether a LoRA without a family in its metadata fits the MODEL (and CLIP) it is about to patch.

ComfyUI matches a LoRA's layer names against the model's own key map and skips every layer that has no match (a
"lora key not loaded" log line each), and a layer that matches by name but not by width fails only when its weight is
patched, mid-sampling, as a logged error. So a LoRA made for another family gives an unstyled image and no error.
Our files record their family (bridge.check_model_family refuses a wrong one); for the others this reads the fit off
ComfyUI's key map before anything is patched.
"""
import comfy.lora
import comfy.utils

from .core_modules import families
from .families import family_of_model

LORA_PAIRS = ((".lora_down.weight", ".lora_up.weight"), (".lora_A.weight", ".lora_B.weight"))


def _layers(tensors: dict) -> dict[str, tuple]:
    """{layer name as the file writes it: (down, up)} for every low-rank pair in the file."""
    layers = {}
    for key in tensors:
        for down, up in LORA_PAIRS:
            if key.endswith(down) and key[:-len(down)] + up in tensors:
                layers[key[:-len(down)]] = (tensors[key], tensors[key[:-len(down)] + up])
    return layers


def _width_mismatch(name: str, down, up, weight) -> str | None:
    """`name: LoRA (out x in) on a layer (out x in)` where the pair cannot multiply into the weight."""
    if up.shape[0] == weight.shape[0] and down.shape[1] == weight.shape[1]:
        return None
    return (f"{name}: the LoRA's layer is {up.shape[0]} x {down.shape[1]}, the model's {weight.shape[0]} x "
            f"{weight.shape[1]}")


def check_lora_fits(lora_name: str, model, clip, tensors: dict) -> None:
    """Refuse, naming the MODEL's family and the misfit, a LoRA whose layers ComfyUI would skip or fail to patch."""
    problem = _fit_problem(model, clip, tensors)
    if problem:
        family = families.display_name(family_of_model(model).key)
        raise ValueError(f"{lora_name} does not fit this {family} MODEL: {problem}. Its metadata names no model "
                         f"family, and it was made for another model; pick a LoRA made for {family}.")


def _fit_problem(model, clip, tensors: dict) -> str | None:
    """What keeps this LoRA from patching MODEL/CLIP (no layer matches, or a matched layer's width differs), or None."""
    key_map = comfy.lora.model_lora_keys_unet(model.model, {})
    if clip is not None:
        key_map = comfy.lora.model_lora_keys_clip(clip.cond_stage_model, key_map)
    layers = _layers(tensors)
    matched = {name: key_map[name] for name in layers if name in key_map}
    if layers and not matched:
        example = next(iter(layers))
        return (f"none of its {len(layers)} layers is a layer of this model (ComfyUI would load nothing; its first is "
                f"{example})")
    for name, target in matched.items():
        if isinstance(target, tuple):       # a slice of a fused weight (Flux's qkv): only the input width is whole
            continue
        owner = model.model if target.startswith("diffusion_model.") else clip.cond_stage_model
        mismatch = _width_mismatch(name, *layers[name], comfy.utils.get_attr(owner, target))
        if mismatch:
            return f"its layers do not have this model's widths ({mismatch})"
    return None
