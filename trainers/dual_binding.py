"""StyleForge's dual-binding loss over every component (trainers/styleforge.py), and the prompts' conditions it
reads: encoded on every step when the text-encoder LoRA trains, else once per distinct prompt, before the steps, with
the encoder then released (an LLM encoder such as Qwen3-4B is not kept beside the transformer being trained)."""
from dataclasses import dataclass

import torch
from torch import nn

from comfy_adapter.batch_conditioning import join_conditionings


@dataclass
class SetBatch:
    """One rank's images of one set for one micro-step."""
    latents: torch.Tensor
    captions: list[str]
    generators: list[torch.Generator]      # each item's noise and timestep


def stack_conditions(encoded: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """One (cond, pooled) row per item. Prompts past 77 tokens make longer conds, joined as ComfyUI batches them
    (comfy_adapter.batch_conditioning.join_conditionings). pooled is None for families without one."""
    pooled = [pooled for _, pooled in encoded]
    return join_conditionings([cond for cond, _ in encoded]), None if pooled[0] is None else torch.cat(pooled)


class DualBindingLoss(nn.Module):
    """The trainable LoRAs, and the loss of one micro-step over every component: per set the mean over its items.
    `data`: the components (trainers.styleforge.ComponentData)."""

    def __init__(self, diffusion, loras: nn.ModuleDict, data: list, prior_weight: float):
        super().__init__()
        self.loras = loras
        self.diffusion = diffusion             # frozen, and no nn.Module: never among the trained parameters
        self.data, self.prior_weight = data, prior_weight
        self.train_text_encoder = "text_encoder" in loras
        self._prompt_cache = {}

    def condition(self, prompt: str):
        if self.train_text_encoder:
            return self.diffusion.encode_prompt(prompt)
        if prompt not in self._prompt_cache:
            with torch.no_grad():
                self._prompt_cache[prompt] = self.diffusion.encode_prompt(prompt)
        return self._prompt_cache[prompt]

    def cache_conditions(self, prompts: list[str]) -> int:
        """With a frozen text encoder: encode every distinct prompt once, up front, then move the encoder off the
        accelerator for the steps. Returns how many prompts were encoded."""
        if self.train_text_encoder:
            return 0
        for prompt in dict.fromkeys(prompts):
            self.condition(prompt)
        self.diffusion.release_text_encoder()
        return len(self._prompt_cache)

    def training_prompts(self) -> list[str]:
        return [d.prompt(kind, item.caption) for d in self.data
                for kind, items in (("instance", d.styleref), ("prior", d.aux)) for item in items]

    def conditions(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        encoded = {prompt: self.condition(prompt) for prompt in dict.fromkeys(prompts)}
        return stack_conditions([encoded[prompt] for prompt in prompts])

    def forward(self, batches: dict[int, SetBatch]) -> tuple[torch.Tensor, dict[str, float]]:
        """`batches`: set index (2 * component + 0 for StyleRef, 1 for Aux) -> this micro-step's batch."""
        total, parts = 0.0, {}
        for c, d in enumerate(self.data):
            for kind, set_index, weight in (("instance", 2 * c, 1.0), ("prior", 2 * c + 1, self.prior_weight)):
                batch = batches[set_index]
                cond, pooled = self.conditions([d.prompt(kind, caption) for caption in batch.captions])
                loss = self.diffusion.diffusion_losses(batch.latents, cond, pooled, batch.generators).mean()
                total = total + weight * loss
                parts[f"{d.component.name} {kind}"] = loss.item()
        return total, parts
