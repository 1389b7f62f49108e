"""STYLE_TOKENS: what the style-token projection hands to the prompt and concatenation nodes."""
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class StyleTokens:
    tokens: dict[str, torch.Tensor]   # text-encoder name ("clip_l", "clip_g") -> (batch, n_tokens, width)
    family: str                       # the family the encoder was trained with: "sd15", "sdxl"

    def __post_init__(self):
        sizes = {name: tuple(t.shape) for name, t in self.tokens.items()}
        if not self.tokens or any(t.ndim != 3 for t in self.tokens.values()):
            raise ValueError(f"style tokens must be (batch, n_tokens, width) per text encoder; got {sizes}")
        if len({t.shape[:2] for t in self.tokens.values()}) != 1:
            raise ValueError(f"style tokens of the text encoders disagree on batch or token count: {sizes}")
        for name, t in self.tokens.items():
            if not torch.isfinite(t).all():
                raise ValueError(f"The {name} style tokens contain NaN or inf values. The reference image or the "
                                 "style encoder is broken: check the image for NaN pixels, or re-export the encoder.")

    @property
    def batch_size(self) -> int:
        return next(iter(self.tokens.values())).shape[0]

    @property
    def n_tokens(self) -> int:
        return next(iter(self.tokens.values())).shape[1]

    def widths(self) -> dict[str, int]:
        return {name: t.shape[2] for name, t in self.tokens.items()}

    def item(self, index: int) -> dict[str, torch.Tensor]:
        return {name: t[index] for name, t in self.tokens.items()}

    def averaged(self) -> "StyleTokens":
        return StyleTokens({name: t.mean(dim=0, keepdim=True) for name, t in self.tokens.items()}, self.family)
