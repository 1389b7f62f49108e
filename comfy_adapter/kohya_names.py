"""LoRA names for our adapted layers (kohya's, or ComfyUI-native for the DiTs), taken from ComfyUI's own LoRA key map.

Using ComfyUI's map (comfy.lora.model_lora_keys_unet / _clip) guarantees that ComfyUI's LoraLoader
finds every key we write. Among the names it accepts for a weight we pick the one kohya's
sd-scripts write, which A1111 and Forge read too: SD1 UNets use diffusers block names, SDXL UNets
LDM block names; text encoders are lora_te_ (SD1) or lora_te1_/lora_te2_ (SDXL clip_l/clip_g). Both
choices are the family's registry entry (core/families.py). A family whose LoRA naming is "comfy" (Flux.2 Klein,
Z-Image) gets the name ComfyUI maps for every model, `diffusion_model.<module path>`: the module path as the diffusion
model file and ComfyUI hold it, the form ComfyUI's own LoRA trainer writes.
"""
import comfy.lora

from .core_modules import families


def _inverse(key_map: dict[str, str], prefix: str) -> dict[str, list[str]]:
    inverse: dict[str, list[str]] = {}
    for lora_name, weight_key in key_map.items():
        if lora_name.startswith(prefix):
            inverse.setdefault(weight_key, []).append(lora_name)
    return inverse


def unet_names(unet_model, module_names: list[str], family: str) -> dict[str, str]:
    """{denoiser module name (within diffusion_model): its LoRA name}."""
    key_map = comfy.lora.model_lora_keys_unet(unet_model, {})
    if families.get_family(family).lora.style == "comfy":
        return {module: _native_name(key_map, module) for module in module_names}
    inverse = _inverse(key_map, "lora_unet_")
    naming = families.get_family(family).lora.kohya_unet
    names = {}
    for module in module_names:
        candidates = inverse.get(f"diffusion_model.{module}.weight", [])
        ldm_style = "lora_unet_" + module.replace(".", "_")
        diffusers_style = [c for c in candidates if c != ldm_style]
        if naming == "diffusers" and diffusers_style:
            names[module] = diffusers_style[0]
        elif ldm_style in candidates:
            names[module] = ldm_style
        else:
            raise KeyError(f"ComfyUI has no LoRA name for UNet layer {module}")
    return names


def _native_name(key_map: dict, module: str) -> str:
    name = f"diffusion_model.{module}"
    if key_map.get(name) != f"{name}.weight":
        raise KeyError(f"ComfyUI maps no LoRA name {name} to the layer {module}")
    return name


def text_encoder_names(text_encoder, module_names: list[str], family: str) -> dict[str, str]:
    """{text-encoder module name (within cond_stage_model): kohya name}."""
    inverse = _inverse(comfy.lora.model_lora_keys_clip(text_encoder, {}), "lora_te")
    wanted = families.get_family(family).lora.text_encoder_prefixes
    names = {}
    for module in module_names:
        candidates = [c for c in inverse.get(f"{module}.weight", []) if c.startswith(wanted)]
        if not candidates:
            raise KeyError(f"ComfyUI has no LoRA name for text-encoder layer {module}")
        names[module] = candidates[0]
    return names
