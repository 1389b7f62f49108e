"""What the nodes do with ComfyUI objects: folders, CLIP tokens, LoRA patching, sampling, model management, progress.

Everything here uses ComfyUI's public surfaces (comfy.sd.CLIP's tokenize/encode, ModelPatcher,
model_management, folder_paths, comfy.utils.ProgressBar), so a ComfyUI update breaks at most
the adapter.
"""
import os

import torch

import comfy.model_management
import comfy.model_patcher
import comfy.sample
import comfy.samplers
import comfy.utils
import folder_paths

from .core_modules import ddim, families
from .families import family_of_model

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


def missing_file_message(folder: str, file_name: str) -> str | None:
    """Why `file_name` cannot be loaded from models/<folder> (naming the folders and the fix), or None if it can.

    Nodes return this from their `validate_inputs`, so the host shows it before the graph runs; a node that
    validates an input itself also keeps hosts from 0.8 on from refusing it with a bare "Value not in list".
    """
    if folder_paths.get_full_path(folder, file_name) is not None:
        return None
    return (f"{file_name} is not in any models/{folder} folder ({', '.join(folder_paths.get_folder_paths(folder))}). "
            "Put it there and refresh.")


def model_file_path(folder: str, file_name: str) -> str:
    message = missing_file_message(folder, file_name)
    if message is not None:
        raise FileNotFoundError(message)
    return folder_paths.get_full_path(folder, file_name)


def check_model_family(what: str, family: str, model) -> None:
    """Refuse a file made for another family than the MODEL's, naming both and the fix.
    `what` reads as the subject of "... for SD1.x", e.g. "x.safetensors is a LoRA"."""
    model_family = family_of_model(model).key
    if family != model_family:
        made_for, model_name = families.display_name(family), families.display_name(model_family)
        raise ValueError(f"{what} for {made_for} but the MODEL is {model_name}. Load an {made_for} checkpoint, or "
                         f"use one made for {model_name}.")


# ---- text encoders -------------------------------------------------------------------------
def encode(clip, tokens: dict[str, list]) -> list:
    """Tokens -> CONDITIONING, exactly as ComfyUI's CLIPTextEncode encodes."""
    return clip.encode_from_tokens_scheduled(tokens)


def append_tokens(conditioning: list, rows: torch.Tensor) -> list:
    """CONDITIONING with `rows` (1 or batch, n, width) appended on the token axis of every entry, as
    ConditioningConcat appends; the entries' options are copied, the inputs stay untouched."""
    return [[torch.cat([cond, rows.to(cond).expand(cond.shape[0], -1, -1)], dim=1), dict(options)]
            for cond, options in conditioning]


# ---- LoRA ------------------------------------------------------------------------------------
def apply_lora(model, clip, tensors: dict, strength_model: float, strength_clip: float):
    """Patch clones of MODEL and CLIP with a LoRA exactly as ComfyUI's LoraLoader does."""
    import comfy.sd
    return comfy.sd.load_lora_for_models(model, clip, tensors, strength_model, strength_clip)


# ---- sampling with StyleSmith's own step rule ------------------------------------------------
SCHEDULERS = comfy.samplers.SCHEDULER_NAMES


def model_sigmas(model, scheduler: str, steps: int) -> torch.Tensor:
    """The model's own descending noise levels for `steps` steps, ending at 0 (what KSampler uses)."""
    return comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), scheduler, steps).cpu()


def structure_sigmas(model, scheduler: str, steps: int, t0: float) -> torch.Tensor:
    """The noise levels an OSASIS structural code is inverted through and decoded along: the tail of the
    model's `steps`-step schedule that starts at fraction t0 (core.sampling.ddim.sub_schedule)."""
    return ddim.sub_schedule(model_sigmas(model, scheduler, steps), t0).float()


def model_timesteps(model, sigmas: torch.Tensor) -> torch.Tensor:
    """The training timestep of each noise level (what a timestep-conditioned network is fed)."""
    return model.get_model_object("model_sampling").timestep(sigmas)


def latent_to_model_space(model, samples: torch.Tensor) -> torch.Tensor:
    """A LATENT's samples as the diffusion model sees them (the latent format's scale and shift)."""
    return model.get_model_object("latent_format").process_in(samples)


def latent_channels(model) -> int:
    return model.get_model_object("latent_format").latent_channels


def unet_levels(model) -> int:
    """How many resolution levels the UNet has (len of its channel multipliers)."""
    return len(model.model.model_config.unet_config["channel_mult"])


def context_width(model) -> int:
    """The width of the text context the denoiser attends to (768 for SD1.x, 2048 for SDXL, 7680 for Flux.2 Klein)."""
    return family_of_model(model).context_width


def uses_unet(model) -> bool:
    """Whether the denoiser is a UNet with resolution levels (SD1.x, SDXL), not a transformer over tokens."""
    return family_of_model(model).denoiser == families.UNET


def with_attn2_patch(model, patch):
    """A clone of MODEL whose cross-attention layers call patch(n, context, value, extra_options) first."""
    model = model.clone()
    model.set_model_attn2_patch(patch)
    return model


def run_step_rule(model, rule, sigmas: torch.Tensor, conditioning: list, samples: torch.Tensor) -> torch.Tensor:
    """Run `rule(x, sigmas, eps, callback)` inside ComfyUI's sampler, as SamplerCustom runs a sampler.

    ComfyUI does the rest as for any sampler: model loading, patches (LoRA, attention), conditioning
    (SDXL's size vector), the latent format. `eps(x, sigma)` is the model's noise prediction with the
    conditioning (cfg 1); `x` starts at the latent `samples` and the result comes back as a LATENT's samples.
    A ComfyUI progress bar follows the steps, and ComfyUI's interrupt stops them.
    """
    bar = comfy.utils.ProgressBar(len(sigmas) - 1)

    def report(step, total):
        comfy.model_management.throw_exception_if_processing_interrupted()
        bar.update_absolute(step + 1, total)

    def sampler_function(model_k, x, sigmas, extra_args=None, callback=None, disable=None):
        # ComfyUI hands a sampler noise_scaling(sigmas[0], noise, latent) with our zero noise: the latent itself for
        # eps and v models, (1 - sigma) * latent for flow models. Undone, the rule starts at the latent for all.
        x = model.get_model_object("model_sampling").inverse_noise_scaling(sigmas[0], x)

        def eps(x_in, sigma):
            sigma = sigma.to(x_in).expand(x_in.shape[0])
            return ddim.eps_from_x0(x_in, model_k(x_in, sigma, **(extra_args or {})), sigma)
        return rule(x, sigmas, eps, report)

    comfy.model_management.throw_exception_if_processing_interrupted()
    return comfy.sample.sample_custom(model, torch.zeros_like(samples), 1.0, comfy.samplers.KSAMPLER(sampler_function),
                                      sigmas.float(), conditioning, conditioning, samples, disable_pbar=True)


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
