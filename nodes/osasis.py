"""OSASIS nodes (Cho et al.): structural encode, semantic encode, stylising decode, style loader."""
import logging

import torch

from ..comfy_adapter import bridge
from ..comfy_adapter.block_mixing import supports_block_mixing, with_block_mixing
from ..comfy_adapter.clip_vision import clip_vision_code
from ..comfy_adapter.families import family_of_clip, family_of_model
from ..comfy_adapter.v3 import io
from ..core.sampling.ddim import ddim_invert
from ..core.families import display_name
from ..core.osasis.decode import StructuralCode, osasis_decode, schedule_difference
from ..core.osasis.mixing import blend_contexts, level_of, style_weights
from ..core.osasis.semantics import DEFAULT_PLACEHOLDER, DEFAULT_TEMPLATE, describe_code
from .checks import (
    checked_image,
    require_finite_conditioning,
    require_finite_inputs,
    require_finite_output,
    require_finite_tensor,
)
from .style_tokens import StyleEncoderType, encode_with_style, image_to_style_tokens

CATEGORY = "StyleSmith/OSASIS"
FOLDER = "osasis"
StyleType = io.Custom("OSASIS_STYLE")
StructureType = io.Custom("OSASIS_STRUCTURE")

bridge.register_model_folder(FOLDER)


def check_context(name: str, conditioning: list, model) -> None:
    width = bridge.context_width(model)
    for cond, _ in conditioning:
        if cond.shape[-1] != width:
            raise ValueError(f"{name} is {cond.shape[-1]} wide but this MODEL attends to {width}-wide contexts: make "
                             f"{name} with this checkpoint's CLIP.")


def check_batch(name: str, conditioning: list, batch: int) -> None:
    for cond, _ in conditioning:
        if cond.shape[0] not in (1, batch):
            raise ValueError(f"{name} holds {cond.shape[0]} codes but the latent batch has {batch} images: give one "
                             f"code for all, or one per image (encode the same images in the same order).")


class OsasisStyleLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="StyleSmithOsasisStyleLoader", display_name="Load OSASIS Style", category=CATEGORY,
            description="Loads a one-shot OSASIS style (from models/osasis): the style LoRA, the structure-preserving "
                        "network, the schedule it was trained with and its reference images.",
            inputs=[io.Combo.Input("style_name", options=bridge.model_files(FOLDER),
                                   tooltip="An OSASIS style file made by trainers/osasis/train.py, from models/osasis.")],
            outputs=[StyleType.Output(display_name="OSASIS_STYLE", tooltip="The style, for OSASIS Decode."),
                     io.Image.Output(display_name="reference",
                                     tooltip="The style image and its photoreal counterpart, as trained."),
                     io.String.Output(display_name="info",
                                      tooltip="t0, steps and the semantic code the style was trained with.")])

    @classmethod
    def validate_inputs(cls, style_name):
        return bridge.missing_file_message(FOLDER, style_name) or True

    @classmethod
    def execute(cls, style_name):
        from ..core.formats.osasis_style_file import load_osasis_style
        style = load_osasis_style(bridge.model_file_path(FOLDER, style_name))
        thumbnails = [t.float() / 255.0 for t in style.thumbnails.values()]
        reference = torch.stack(thumbnails) if thumbnails else torch.zeros(1, 64, 64, 3)
        info = (f"{style_name}: {display_name(style.family)}, trained at t0={style.t0}, "
                f"{style.steps} {style.scheduler} steps, SPN weight {style.spn_weight}; semantic code: "
                f"{describe_code(style.semantic)}")
        if not thumbnails:
            info += ("; this file holds no reference pictures, so the reference output is a black 64x64 image "
                     "(the trainer stores them: train again, or keep using the style without them)")
        return io.NodeOutput(style, reference, info, ui={"text": [info]})


class OsasisStructuralEncode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="StyleSmithOsasisStructuralEncode", display_name="OSASIS Structural Encode", category=CATEGORY,
            description="Inverts a latent to the noise level t0 with deterministic DDIM: the structural code x_t0 that "
                        "OSASIS Decode turns back into an image. With inversion iterations > 0 the encode is the "
                        "exact inverse of the decode.",
            inputs=[
                io.Model.Input("model", tooltip="The base checkpoint's MODEL (no style LoRA)."),
                io.Latent.Input("latent", tooltip="The input image, VAE-encoded."),
                io.Conditioning.Input("z_content", tooltip="The input's semantic code (OSASIS Semantic Encode); decode "
                                                           "with the same one to reconstruct."),
                io.Float.Input("t0", default=0.5, min=0.01, max=1.0, step=0.01,
                               tooltip="How far to invert, as a fraction of the schedule: higher keeps less structure "
                                       "and lets the style change more (paper: 0.5)."),
                io.Int.Input("steps", default=50, min=1, max=1000, tooltip="Steps of the whole schedule (paper: 50 "
                                                                             "training, 100 inference)."),
                io.Combo.Input("scheduler", options=bridge.SCHEDULERS, default="normal",
                               tooltip="The noise schedule; decode uses the same."),
                io.Int.Input("inversion_iterations", default=3, min=0, max=50,
                             tooltip="Fixed-point refinements per step: 0 is plain DDIM inversion (the original); "
                                     "3 reconstructs to about 1e-6."),
            ],
            outputs=[StructureType.Output(display_name="OSASIS_STRUCTURE",
                                          tooltip="x_t0 with its schedule and the input latent.")])

    @classmethod
    def execute(cls, model, latent, z_content, t0, steps, scheduler, inversion_iterations):
        require_finite_inputs(t0=t0)
        samples = require_finite_tensor("The latent", latent["samples"], "the image it was encoded from has NaN or "
                                        "infinite pixels, or the VAE is broken. Check the image and the VAE.")
        channels = bridge.latent_channels(model)
        if samples.ndim != 4 or samples.shape[1] != channels:
            raise ValueError(f"The latent has shape {tuple(samples.shape)} but this MODEL works on {channels}-channel "
                             "image latents: encode the image with this checkpoint's VAE.")
        if bridge.uses_unet(model) and (samples.shape[-1] % 8 or samples.shape[-2] % 8):
            raise ValueError(f"The latent is {samples.shape[-1]}x{samples.shape[-2]}, not a multiple of 8 (the UNet "
                             "halves it three times): scale or crop the image to a multiple of 64 pixels first.")
        check_context("z_content", z_content, model)
        check_batch("z_content", z_content, samples.shape[0])
        sigmas = bridge.structure_sigmas(model, scheduler, steps, t0)
        code = bridge.run_step_rule(
            model, lambda x, s, eps, report: ddim_invert(x, s, eps, inversion_iterations, callback=report),
            sigmas, z_content, samples)
        require_finite_output("OSASIS Structural Encode", code, "a MODEL or z_content holding NaN weights or values")
        return io.NodeOutput(StructuralCode(code.cpu(), samples.clone(), sigmas, t0, steps, scheduler,
                                            family_of_model(model).key))


class OsasisSemanticEncode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="StyleSmithOsasisSemanticEncode", display_name="OSASIS Semantic Encode", category=CATEGORY,
            description="An image's semantic code z_sem, as conditioning: the style encoder's tokens in the template's "
                        "placeholder, through the text encoder; or, without a style encoder, the CLIP vision image "
                        "embedding as one token, in the slot of the text encoder as wide as it (SD1.x: ViT-L/14; "
                        "SDXL: ViT-L/14 or ViT-bigG/14).",
            inputs=[
                io.Image.Input("image", tooltip="The image to describe (content or style)."),
                io.Clip.Input("clip", tooltip="The checkpoint's CLIP."),
                StyleEncoderType.Input("style_encoder", optional=True, tooltip="From Load Style Encoder (preferred)."),
                io.ClipVision.Input("clip_vision", optional=True,
                                    tooltip="Used when no style encoder is connected (Load CLIP Vision): its image "
                                            "embedding must be as wide as a text encoder of the checkpoint."),
                io.String.Input("template", default=DEFAULT_TEMPLATE,
                                tooltip="The text the tokens are placed in; the trainer used the same default."),
                io.String.Input("placeholder", default=DEFAULT_PLACEHOLDER, tooltip="The word the tokens replace."),
            ],
            outputs=[io.Conditioning.Output(display_name="z_sem", tooltip="One entry per image.")])

    @classmethod
    def execute(cls, image, clip, template, placeholder, style_encoder=None, clip_vision=None):
        image = checked_image("OSASIS Semantic Encode", image)
        if style_encoder is not None:
            z_sem = encode_with_style(clip, template, image_to_style_tokens(style_encoder, image), placeholder)
        elif clip_vision is None:
            raise ValueError("OSASIS Semantic Encode needs a style_encoder (Load Style Encoder) or a clip_vision (Load "
                             "CLIP Vision) input to make the image's semantic code: connect one.")
        else:
            context, pooled = clip_vision_code(clip_vision, image, family_of_clip(clip))
            z_sem = [[context, {"pooled_output": pooled}]]
        return io.NodeOutput(require_finite_conditioning("OSASIS Semantic Encode", z_sem,
                                                         "the CLIP, the style encoder or the CLIP vision model"))


class OsasisDecode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="StyleSmithOsasisDecode", display_name="OSASIS Decode", category=CATEGORY,
            description="Decodes a structural code with the style's LoRA, adding its structure-preserving network at "
                        "each step, so the output keeps the input's structure. z_style drives the fine levels of the "
                        "UNet (a transformer's late blocks) and z_content the coarse ones (early blocks) (mix); a "
                        "prompt steers the result.",
            inputs=[
                io.Model.Input("model", tooltip="The base MODEL the structural code was made with."),
                StructureType.Input("structure", tooltip="From OSASIS Structural Encode."),
                io.Conditioning.Input("z_content", tooltip="The input image's semantic code."),
                io.Float.Input("mix", default=0.5, min=0.0, max=1.0, step=0.05,
                               tooltip="0: z_content everywhere; 1: z_style everywhere; between: z_style takes over "
                                       "the UNet levels from the finest down, or a transformer's blocks from the "
                                       "last back."),
                io.Float.Input("spn_weight", default=0.1, min=0.0, max=2.0, step=0.01,
                               tooltip="Weight of the structure-preserving network (paper: 0.1); 0 turns it off."),
                io.Float.Input("lora_strength", default=1.0, min=-2.0, max=2.0, step=0.05,
                               tooltip="Strength of the style LoRA."),
                StyleType.Input("osasis_style", optional=True,
                                tooltip="From Load OSASIS Style; without it the base model decodes (reconstruction)."),
                io.Conditioning.Input("z_style", optional=True, tooltip="The style image's semantic code; "
                                                                        "default z_content."),
                io.Conditioning.Input("prompt", optional=True,
                                      tooltip="Text-driven manipulation: its tokens join the decoding condition."),
            ],
            outputs=[io.Latent.Output(tooltip="The stylised latent; decode it with the VAE.")])

    @classmethod
    def execute(cls, model, structure, z_content, mix, spn_weight, lora_strength, osasis_style=None, z_style=None,
                prompt=None):
        require_finite_inputs(mix=mix, spn_weight=spn_weight, lora_strength=lora_strength)
        bridge.check_model_family("The structural code is", structure.family, model)
        for name, conditioning in (("z_content", z_content), ("z_style", z_style), ("prompt", prompt)):
            if conditioning:
                check_context(name, conditioning, model)
                check_batch(name, conditioning, structure.code.shape[0])
        spn, clean, timesteps, warnings = None, None, None, []
        if osasis_style is not None:
            bridge.check_model_family("The OSASIS style is", osasis_style.family, model)
            difference = schedule_difference(structure, osasis_style.t0, osasis_style.steps, osasis_style.scheduler)
            if difference:
                warnings.append(f"OSASIS Decode: {difference}")
                logging.warning(warnings[-1])
            model, _ = bridge.apply_lora(model, None, osasis_style.lora, lora_strength, 0.0)
            spn = osasis_style.spn
            clean = bridge.latent_to_model_space(model, structure.clean)
            timesteps = bridge.model_timesteps(model, structure.sigmas)
        positive = bridge.append_tokens(z_content, prompt[0][0]) if prompt else z_content
        if z_style is not None and mix > 0:
            style = bridge.append_tokens(z_style, prompt[0][0]) if prompt else z_style
            blend_contexts(positive[0][0], style[0][0], 0.0)  # refuses mismatched token counts before sampling starts
            if bridge.uses_unet(model):
                model = mixed_model(model, style[0][0], mix, structure.code.shape[-2:])
            elif supports_block_mixing(model):
                model = with_block_mixing(model, style[0][0], mix)
            else:
                raise ValueError(f"Mixing z_style into the decode works by UNet level or by the block depth of a Flux or Lumina 2 transformer, and "
                                 f"{display_name(family_of_model(model).key)} has neither: set mix to 0 or "
                                 "disconnect z_style (README: deviations).")
        samples = bridge.run_step_rule(
            model, lambda x, s, eps, report: osasis_decode(x, s, eps, spn, clean, timesteps, spn_weight, report),
            structure.sigmas, positive, structure.code)
        require_finite_output("OSASIS Decode", samples, "the OSASIS style (LoRA or SPN), the MODEL, or z_content / "
                              "z_style / prompt")
        return io.NodeOutput({"samples": samples.cpu()}, ui={"text": warnings} if warnings else None)


def mixed_model(model, style_context: torch.Tensor, mix: float, latent_size):
    """MODEL whose cross-attention attends to z_content blended with z_style by resolution level."""
    levels = bridge.unet_levels(model)
    weights = style_weights(mix, levels)

    def patch(n, context, value, extra_options):
        block = extra_options.get("block", ("input", 0))
        level = levels if block[0] == "middle" else level_of(n.shape[1], *latent_size, levels)
        mixed = blend_contexts(context, style_context, weights[level])
        return n, mixed, mixed

    return bridge.with_attn2_patch(model, patch)


NODES = [OsasisStyleLoader, OsasisStructuralEncode, OsasisSemanticEncode, OsasisDecode]
