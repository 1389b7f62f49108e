"""OSASIS semantic codes z_sem for latent models: cross-attention contexts made from an image.

The original's z_sem is a DiffAE semantic vector. Our models are conditioned by cross-attention, so
z_sem is a CONDITIONING, made one of two ways (trainer and nodes use the same, and a style file records which):
- the style encoder's tokens in place of the placeholder of a fixed template, run through the text encoder
  (the style-tokens method);
- a CLIP image embedding as a one-token context (`image_embedding_code`). CLIP's projection puts the image in
  the space its own text encoder's pooled output lives in, so the embedding fills the context slot of the text
  encoder whose width it has (SD1.x's clip_l: ViT-L/14, 768; SDXL's clip_l: ViT-L/14, or clip_g: ViT-bigG/14,
  1280) and, where the widths match, the pooled conditioning too. The other slots are zero, as ComfyUI's
  ConditioningZeroOut leaves an unused condition.

On the DiT families (Flux.2 Klein, Z-Image) the text encoder is an LLM (Qwen3-4B): z_sem is the first way, the
style encoder's tokens (a head for the family's encoder, `qwen3_4b`) in the template, inside the family's chat
template, through the family's text encoder and its own read-out (Klein's three stacked hidden states, Z-Image's
second-to-last), exactly as the SD path runs them through CLIP. The second way does not carry over: no CLIP image
embedding lives in an LLM's input or hidden space, so `image_embedding_code` refuses it, naming the family.
"""
import torch

from ..families import ModelFamily

DEFAULT_TEMPLATE = "a picture in the style of sks"
DEFAULT_PLACEHOLDER = "sks"


def image_embedding_code(embeds: torch.Tensor, family: ModelFamily) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, P) CLIP image embeddings -> z_sem as (context (B, 1, context width), pooled (B, pooled width))."""
    if embeds.ndim != 2:
        raise ValueError(f"expected CLIP image embeddings of shape (batch, width); got {tuple(embeds.shape)}")
    width = embeds.shape[1]
    llms = [e for e in family.encoders if e.kind == "llm"]
    if llms:
        raise ValueError(f"{family.display_name} encodes text with {llms[0].name}, an LLM: no CLIP image embedding "
                         f"lives in its space, so a CLIP vision model cannot make its semantic code. Use a style "
                         f"encoder with a {llms[0].key} head (Load Style Encoder; the trainer's --style-encoder).")
    if width not in family.text_encoders.values():
        slots = ", ".join(f"{name} {w}" for name, w in family.text_encoders.items())
        raise ValueError(f"The CLIP vision model gives {width}-wide image embeddings but {family.display_name}'s "
                         f"text encoders are {slots} wide, so the embedding cannot stand in for text. Use a CLIP "
                         f"vision model as wide as one of them ({vision_models(family)}), or a style encoder.")

    def slot(slot_width: int) -> torch.Tensor:
        return embeds if slot_width == width else embeds.new_zeros(embeds.shape[0], slot_width)

    context = torch.cat([slot(w) for w in family.text_encoders.values()], dim=1)[:, None, :]
    return context, slot(family.text_encoders[family.pooled_from])


def vision_models(family: ModelFamily) -> str:
    """The CLIP vision models whose embeddings fit a family's text encoders, for messages."""
    known = {768: "ViT-L/14", 1280: "ViT-bigG/14"}
    return " or ".join(f"{known[w]}, {w}" for w in family.text_encoders.values())


def describe_code(semantic: dict) -> str:
    """How a style file's `semantic` record says z_sem was made, in words (Load OSASIS Style's info, run summaries)."""
    source = semantic.get("source")
    if source == "style_encoder":
        return f"style encoder {semantic.get('file')} in {semantic.get('template')!r}"
    if source == "clip_vision":
        return f"CLIP vision {semantic.get('file')} (its image embedding)"
    if source == "prompt":
        return f"one prompt for every image, {semantic.get('prompt')!r} (a file from before 2026-12)"
    return f"unknown ({source!r})"
