"""Style-token nodes (Chang): load an encoder, image -> STYLE_TOKENS, prompt with style, concat, export."""
import json
import os

import torch

from ..comfy_adapter import bridge
from ..comfy_adapter.families import family_of_clip, text_encoder_widths
from ..comfy_adapter.style_prompt import tokenize_with_style
from ..comfy_adapter.v3 import io
from ..core.data.image_preprocess import preprocess
from ..core.style_tokens.tokens import StyleTokens
from ..core.style_tokens.injection import check_widths
from .checks import checked_image, require_finite_conditioning, require_finite_inputs

CATEGORY = "StyleSmith/style tokens"
FOLDER = "style_encoders"
StyleEncoderType = io.Custom("STYLE_ENCODER")
StyleTokensType = io.Custom("STYLE_TOKENS")

bridge.register_model_folder(FOLDER)


class LoadedStyleEncoder:
    """A style encoder under ComfyUI's model management, plus its file name for messages."""

    def __init__(self, encoder, file_name: str):
        self.config = encoder.config
        self.file_name = file_name
        self.patcher = bridge.manage(encoder)


def encode_with_style(clip, text: str, style: StyleTokens, placeholder: str) -> list:
    """CONDITIONING for `text` with the style vectors in place of `placeholder`, one entry per token set."""
    check_widths(style.widths(), text_encoder_widths(clip), style.family, family_of_clip(clip).key)
    conds, pooled = [], []
    for index in bridge.with_progress(range(style.batch_size)):
        tokens = tokenize_with_style(clip, text, style.item(index), placeholder)
        (cond, extra), = bridge.encode(clip, tokens)
        conds.append(cond)
        pooled.append(extra)
    extra = dict(pooled[0])
    for key in ("pooled_output", "attention_mask"):   # per token set; DiT families have no pooled output (None)
        if torch.is_tensor(extra.get(key)):
            extra[key] = torch.cat([p[key] for p in pooled])
    return require_finite_conditioning("Prompt with Style Tokens", [[torch.cat(conds), extra]],
                                       "the CLIP's weights (a broken checkpoint or LoRA)")


def image_to_style_tokens(style_encoder: LoadedStyleEncoder, image) -> StyleTokens:
    """One token set per image of the IMAGE batch."""
    pixels = preprocess(image, style_encoder.config.preprocess)
    device = bridge.load_to_device(style_encoder.patcher)
    encoder = style_encoder.patcher.model
    parts = []
    with torch.no_grad():
        for i in bridge.with_progress(range(pixels.shape[0])):
            parts.append({k: v.float().cpu() for k, v in encoder(pixels[i:i + 1].to(device)).items()})
    return StyleTokens({k: torch.cat([p[k] for p in parts]) for k in parts[0]}, style_encoder.config.family)


class StyleEncoderLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="StyleSmithStyleEncoderLoader", display_name="Load Style Encoder", category=CATEGORY,
            description="Loads a StyleSmith style encoder (.safetensors from models/style_encoders): a CLIP vision "
                        "backbone with one projection head per text encoder, trained to turn an image into style tokens.",
            inputs=[io.Combo.Input("encoder_name", options=bridge.model_files(FOLDER),
                                   tooltip="The style encoder file, from models/style_encoders.")],
            outputs=[StyleEncoderType.Output(display_name="STYLE_ENCODER",
                                             tooltip="The encoder, offloaded by ComfyUI like any model.")])

    @classmethod
    def validate_inputs(cls, encoder_name):
        return bridge.missing_file_message(FOLDER, encoder_name) or True

    @classmethod
    def execute(cls, encoder_name):
        from ..core.formats.style_encoder_file import load_style_encoder
        encoder = load_style_encoder(bridge.model_file_path(FOLDER, encoder_name))
        return io.NodeOutput(LoadedStyleEncoder(encoder, encoder_name))


class ImageToStyleTokens(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="StyleSmithImageToStyleTokens", display_name="Image to Style Tokens", category=CATEGORY,
            description="Turns reference images into style tokens (8 per image by default) in the text-embedding "
                        "space. Any size; gray and RGBA images are read as RGB.",
            inputs=[
                StyleEncoderType.Input("style_encoder", tooltip="From Load Style Encoder."),
                io.Image.Input("image", tooltip="One or more reference images whose style you want."),
                io.Combo.Input("batch_mode", options=["per image", "average"], default="per image",
                               tooltip="'per image': one token set per image (a batch of conditionings); "
                                       "'average': one token set, the mean over the images."),
            ],
            outputs=[StyleTokensType.Output(display_name="STYLE_TOKENS",
                                            tooltip="(batch, 8, width) tokens per text encoder of the family.")])

    @classmethod
    def execute(cls, style_encoder, image, batch_mode):
        tokens = image_to_style_tokens(style_encoder, checked_image("Image to Style Tokens", image))
        return io.NodeOutput(tokens.averaged() if batch_mode == "average" else tokens)


class EncodePromptWithStyle(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="StyleSmithEncodePromptWithStyle", display_name="Prompt with Style Tokens", category=CATEGORY,
            description="Encodes a prompt with the style tokens in place of the placeholder word, at the input of "
                        "the text encoder, as the style encoder was trained. Without the placeholder the tokens go "
                        "at the end. SDXL fills both text encoders; on Flux.2 Klein 4B and Z-Image the tokens go "
                        "inside the chat template, as embedding:NAME would.",
            inputs=[
                io.Clip.Input("clip", tooltip="The CLIP of the checkpoint the style encoder was trained for."),
                StyleTokensType.Input("style_tokens", tooltip="From Image to Style Tokens."),
                io.String.Input("text", multiline=True, default="a photo of a lighthouse, in the style of sks",
                                tooltip="The prompt. The placeholder word marks where the style goes; ComfyUI's "
                                        "(word:1.2) weighting applies to it too."),
                io.String.Input("placeholder", default="sks",
                                tooltip="The word the style tokens replace (the training captions used 'sks')."),
            ],
            outputs=[io.Conditioning.Output(tooltip="One entry per token set; use it as the positive prompt.")])

    @classmethod
    def execute(cls, clip, style_tokens, text, placeholder):
        return io.NodeOutput(encode_with_style(clip, text, style_tokens, placeholder))


class ConcatStyle(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="StyleSmithConcatStyle", display_name="Concat Style to Conditioning", category=CATEGORY,
            description="Appends a style to any conditioning on the token axis, scaled by strength: give style "
                        "tokens (with the CLIP to encode them) or a style conditioning. Pooled output and other keys "
                        "stay the text conditioning's.",
            inputs=[
                io.Conditioning.Input("conditioning", tooltip="The conditioning to add the style to."),
                io.Float.Input("strength", default=1.0, min=0.0, max=10.0, step=0.05,
                               tooltip="Multiplies the appended style rows; 1 keeps them as encoded."),
                StyleTokensType.Input("style_tokens", optional=True,
                                      tooltip="Style tokens; encoded alone through the CLIP, then appended."),
                io.Clip.Input("clip", optional=True, tooltip="Needed with style_tokens."),
                io.Conditioning.Input("style_conditioning", optional=True,
                                      tooltip="Instead of tokens: a conditioning that carries the style."),
            ],
            outputs=[io.Conditioning.Output(tooltip="The conditioning with the style rows appended.")])

    @classmethod
    def execute(cls, conditioning, strength, style_tokens=None, clip=None, style_conditioning=None):
        require_finite_inputs(strength=strength)
        if (style_tokens is None) == (style_conditioning is None):
            raise ValueError("Connect exactly one style: either style_tokens (with clip) or style_conditioning.")
        if style_tokens is not None:
            if clip is None:
                raise ValueError("style_tokens need the clip input too: connect the checkpoint's CLIP.")
            style_conditioning = encode_with_style(clip, "", style_tokens, "")
        style = style_conditioning[0][0] * strength
        for cond, _ in conditioning:
            if cond.shape[-1] != style.shape[-1]:
                raise ValueError(f"Token width mismatch: the conditioning is {cond.shape[-1]} wide, the style "
                                 f"{style.shape[-1]}. Both must come from the same checkpoint family.")
            if style.shape[0] not in (1, cond.shape[0]):
                raise ValueError(f"The style has {style.shape[0]} entries and the conditioning {cond.shape[0]}; "
                                 "use one style (batch_mode 'average') or as many as the conditioning.")
        return io.NodeOutput(require_finite_conditioning("Concat Style to Conditioning",
                                                         bridge.append_tokens(conditioning, style),
                                                         "conditioning or style_conditioning holding NaN values"))


class SaveStyleEmbedding(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="StyleSmithSaveStyleEmbedding", display_name="Save Style as Embedding", category=CATEGORY,
            description="Saves style tokens as a ComfyUI embedding in models/embeddings, usable as "
                        "embedding:NAME in any stock text encode (SD1: one tensor; SDXL: clip_l and clip_g; "
                        "Flux.2 Klein 4B and Z-Image: qwen3_4b).",
            inputs=[
                StyleTokensType.Input("style_tokens", tooltip="From Image to Style Tokens."),
                io.String.Input("name", default="stylesmith_style",
                                tooltip="File name without extension: letters, digits, '_', '-', '.'; a batch adds "
                                        "_0, _1, ..."),
                io.Boolean.Input("overwrite", default=False, optional=True,
                                 tooltip="Replace an embedding of the same name; off: an existing name is refused."),
            ],
            outputs=[io.String.Output(display_name="prompt_word",
                                      tooltip="embedding:NAME, ready to put in a prompt.")],
            is_output_node=True)

    @classmethod
    def execute(cls, style_tokens, name, overwrite=False):
        from ..core.formats.embedding_file import check_embedding_name, save_embedding
        folder = bridge.embeddings_folder()
        names = [name] if style_tokens.batch_size == 1 else [f"{name}_{i}" for i in range(style_tokens.batch_size)]
        for file_name in names:
            check_embedding_name(file_name)
        existing = [n for n in names if os.path.exists(f"{folder}/{n}.safetensors")]
        if existing and not overwrite:
            raise ValueError(f"{', '.join(existing)} already exist(s) in {folder}: pick another name, or switch "
                             "overwrite on to replace them.")
        for index, file_name in enumerate(names):
            save_embedding(style_tokens.item(index), style_tokens.family, f"{folder}/{file_name}.safetensors")
        words = " ".join(f"embedding:{n}" for n in names)
        return io.NodeOutput(words, ui={"text": [json.dumps({"saved": names, "folder": folder})]})


NODES = [StyleEncoderLoader, ImageToStyleTokens, EncodePromptWithStyle, ConcatStyle, SaveStyleEmbedding]
