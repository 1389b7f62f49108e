"""OSASIS semantic codes z_sem for latent models: cross-attention contexts made from an image.

The original's z_sem is a DiffAE semantic vector. Our models are conditioned by cross-attention, so
z_sem is a CONDITIONING: the style encoder's tokens in place of the placeholder of a fixed template,
run through the text encoder (the style-tokens method), or a CLIP image embedding used as a one-token
context where its width equals the model's context width (SD1.x with a ViT-L/14 CLIP vision model).
Trainer and nodes use the same template, so a style file records which code it was trained with.
"""
import torch

DEFAULT_TEMPLATE = "a picture in the style of sks"
DEFAULT_PLACEHOLDER = "sks"


def image_embedding_context(embeds: torch.Tensor, context_width: int) -> torch.Tensor:
    """(B, P) CLIP image embeddings -> (B, 1, P) context; refuses a width the model cannot attend to."""
    if embeds.ndim != 2:
        raise ValueError(f"expected CLIP image embeddings of shape (batch, width); got {tuple(embeds.shape)}")
    if embeds.shape[1] != context_width:
        raise ValueError(f"The CLIP vision model gives {embeds.shape[1]}-wide image embeddings but this model "
                         f"attends to {context_width}-wide contexts. Connect a style encoder instead (Load Style "
                         "Encoder), or a CLIP vision model with that projection width (SD1.x: ViT-L/14, 768).")
    return embeds[:, None, :]
