"""StyleForge nodes: load a style LoRA with its trigger words, and compose prompts from its components."""
import re

from ..comfy_adapter import bridge
from ..comfy_adapter.lora_fit import check_lora_fits
from ..comfy_adapter.v3 import io
from ..core.formats.lora_file import read_lora
from .checks import require_finite_inputs

CATEGORY = "StyleSmith/StyleForge"
FOLDER = "loras"
ComponentsType = io.Custom("STYLEFORGE_COMPONENTS")


class StyleForgeLoraLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="StyleSmithStyleForgeLoraLoader", display_name="Load StyleForge LoRA", category=CATEGORY,
            description="Applies a style LoRA to MODEL and CLIP (as the stock LoRA loader does) and outputs its trigger "
                        "words: StyleForge identifiers per component, or the modelspec / kohya tags of LoRAs made elsewhere.",
            inputs=[
                io.Model.Input("model", tooltip="The checkpoint's MODEL; its family must match the LoRA's."),
                io.Clip.Input("clip", tooltip="The checkpoint's CLIP."),
                io.Combo.Input("lora_name", options=bridge.model_files(FOLDER), tooltip="A LoRA from models/loras."),
                io.Float.Input("strength_model", default=1.0, min=-10.0, max=10.0, step=0.01,
                               tooltip="How strongly the LoRA changes the UNet."),
                io.Float.Input("strength_clip", default=1.0, min=-10.0, max=10.0, step=0.01,
                               tooltip="How strongly the LoRA changes the text encoder(s)."),
            ],
            outputs=[
                io.Model.Output(tooltip="A patched copy of the model; the input stays as it was."),
                io.Clip.Output(tooltip="A patched copy of the CLIP."),
                io.String.Output(display_name="trigger", tooltip="All trigger phrases, comma-separated, e.g. 'zwx style'."),
                ComponentsType.Output(display_name="components", tooltip="Per-component identifiers for StyleForge Prompt."),
            ])

    @classmethod
    def validate_inputs(cls, lora_name):
        return bridge.missing_file_message(FOLDER, lora_name) or True

    @classmethod
    def execute(cls, model, clip, lora_name, strength_model, strength_clip):
        require_finite_inputs(strength_model=strength_model, strength_clip=strength_clip)
        tensors, info = read_lora(bridge.model_file_path(FOLDER, lora_name))
        if info.family is not None:
            bridge.check_model_family(f"{lora_name} is a LoRA", info.family, model)
        else:
            check_lora_fits(lora_name, model, clip, tensors)
        new_model, new_clip = bridge.apply_lora(model, clip, tensors, strength_model, strength_clip)
        trigger = ", ".join(c.trigger for c in info.components)
        note = (f"triggers from {info.source} metadata: {trigger}" if info.components else
                f"{lora_name} carries no trigger words in its metadata; write your own in the prompt.")
        return io.NodeOutput(new_model, new_clip, trigger, info.components, ui={"text": [note]})


class StyleForgePrompt(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="StyleSmithStyleForgePrompt", display_name="StyleForge Prompt", category=CATEGORY,
            description="Fills a prompt template with the LoRA's trigger phrases: {NAME} is a component's phrase "
                        "(e.g. {characters}, {backgrounds}), {all} all of them.",
            inputs=[
                ComponentsType.Input("components", tooltip="From Load StyleForge LoRA."),
                io.String.Input("template", multiline=True, default="a knight resting by a river, {all}",
                                tooltip="Text with {component name} or {all} where the trigger phrases go."),
            ],
            outputs=[io.String.Output(display_name="prompt", tooltip="The filled prompt, for a text encode node.")])

    @classmethod
    def execute(cls, components, template):
        phrases = {c.name: c.trigger for c in components}
        phrases["all"] = ", ".join(c.trigger for c in components)
        unknown = sorted(set(re.findall(r"\{([^{}]+)\}", template)) - set(phrases))
        if unknown:
            raise ValueError(f"The template names {unknown}, but this LoRA's components are {sorted(phrases)}. "
                             "Use those names in braces.")
        return io.NodeOutput(re.sub(r"\{([^{}]+)\}", lambda m: phrases[m.group(1)], template))


NODES = [StyleForgeLoraLoader, StyleForgePrompt]
