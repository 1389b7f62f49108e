"""A family's split files, as users have Flux.2 Klein and Z-Image, loaded by ComfyUI's own loaders for trainers.

The diffusion model goes through comfy.sd.load_diffusion_model (as UNETLoader), which tells the family; the text
encoder files through comfy.sd.load_clip with that family's CLIPLoader type (as CLIPLoader / DualCLIPLoader), with
the size options a file records (core/formats/text_encoder_options.py: only the test harness's shrunk encoders record
any); the VAE from a VAE file (as VAELoader from models/vae) or by the name of one of ComfyUI's approximate VAEs
(taef1, taef2, ... in models/vae_approx, loaded by the stock VAELoader itself). So a trainer sees exactly the
models the stock graph builds from the same files.

Training through these DiTs needs `comfy.model_management.in_training = True` (ComfyUI's fused rope and norm kernels
have no backward otherwise); the trainers set it around their loops, not this loader.
"""
from pathlib import Path

import torch

from .core_modules import errors, families, safe_files, text_encoder_options
from .families import family_of_clip, family_of_model


def load_split_files(diffusion_model: Path, text_encoders: list[Path], vae: str | Path,
                     weight_dtype: torch.dtype | None = None) -> tuple[object, object, object]:
    """(MODEL, CLIP, VAE) of one family from its split files; a clear error when the parts are of different families.

    `weight_dtype` holds the diffusion model's weights in that dtype (UNETLoader's weight_dtype: fp8 or bf16 for a
    frozen base); None lets ComfyUI choose, as UNETLoader's "default"."""
    import comfy.sd
    import folder_paths
    path = safe_files.check_safetensors_file(diffusion_model, "diffusion model")
    model = comfy.sd.load_diffusion_model(str(path), model_options={} if weight_dtype is None else {"dtype": weight_dtype})
    family = family_of_model(model)
    paths = [safe_files.check_safetensors_file(p, "text encoder") for p in text_encoders]
    options = {}
    for p in paths:
        options.update(text_encoder_options.text_encoder_model_options(p))
    clip = comfy.sd.load_clip([str(p) for p in paths], embedding_directory=folder_paths.get_folder_paths("embeddings"),
                              clip_type=clip_type(family), model_options=options)
    clip_family = family_of_clip(clip)
    if clip_family is not family:
        raise errors.UserValueError(f"{', '.join(p.name for p in paths)} loads as the text encoder of {clip_family.display_name}, "
                         f"but {path.name} is {family.display_name}. Pass {family.display_name}'s text encoder.")
    loaded_vae = load_vae(vae)
    if loaded_vae.latent_channels != family.latent_channels:
        raise errors.UserValueError(f"The VAE {vae} has {loaded_vae.latent_channels} latent channels, but {family.display_name} "
                         f"latents have {family.latent_channels}. Pass {family.display_name}'s VAE.")
    return model, clip, loaded_vae


def open_split_files(diffusion_model: Path, text_encoders: list[Path], vae: str | Path, device: torch.device,
                     comfyui: Path | None = None, weights: str = "auto", weight_dtype: torch.dtype | None = None):
    """Configure ComfyUI in this process (as diffusion.open_checkpoint does), then load a family's split files into
    the ComfyDiffusion a single-file checkpoint gives."""
    from .diffusion import ComfyDiffusion
    from .host import import_comfy
    import_comfy(cpu=device.type == "cpu", comfyui=comfyui, weights=weights)
    return ComfyDiffusion.from_parts(*load_split_files(diffusion_model, text_encoders, vae, weight_dtype), device)


def clip_type(family: families.ModelFamily):
    """ComfyUI's CLIPType for a family's text-encoder files, as CLIPLoader maps its type widget."""
    import comfy.sd
    return getattr(comfy.sd.CLIPType, family.comfy_clip_type.upper())


def load_vae(vae: str | Path):
    """A VAE file, or one of ComfyUI's approximate VAEs by the name stock VAELoader lists (taef2, taef1, ...), or by
    that name's path in a vae_approx folder (`.../vae_approx/taef2`), whose folder is then added to ComfyUI's."""
    import comfy.sd
    import comfy.utils
    import folder_paths
    import nodes
    if Path(vae).name in nodes.VAELoader.image_taes and Path(vae).parent != Path():
        folder_paths.add_model_folder_path("vae_approx", str(Path(vae).parent.resolve()))
        vae = Path(vae).name
    if str(vae) in nodes.VAELoader.image_taes:
        installed = folder_paths.get_filename_list("vae_approx")
        missing = [f"{vae}_{part}.safetensors" for part in ("encoder", "decoder")
                   if not any(name.startswith(f"{vae}_{part}.") for name in installed)]
        if missing:
            raise errors.UserFileNotFoundError(f"The approximate VAE {vae} needs {' and '.join(missing)} in ComfyUI's "
                                    f"models/vae_approx ({', '.join(folder_paths.get_folder_paths('vae_approx'))}).")
        return nodes.VAELoader().load_vae(str(vae))[0]
    if not Path(vae).is_file():
        raise errors.UserFileNotFoundError(f"The VAE {vae} is neither a file nor one of ComfyUI's approximate VAEs "
                                f"({', '.join(nodes.VAELoader.image_taes)}, read from models/vae_approx). Pass the "
                                "path of the family's VAE file, or the name of its approximate VAE.")
    path = safe_files.check_safetensors_file(vae, "VAE")
    state_dict, metadata = comfy.utils.load_torch_file(str(path), return_metadata=True)
    loaded = comfy.sd.VAE(sd=state_dict, metadata=metadata)
    loaded.throw_exception_if_invalid()
    return loaded
