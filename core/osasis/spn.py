"""OSASIS structure-preserving network (SPN; Cho et al., CVPR 2024, Sec. 3.3), on latents.

    x_clean -> Conv1x1 -> [GroupNorm -> SiLU -> Conv1x1, then scale/shift from the timestep] x 2 -> Conv1x1

Every convolution is 1x1 (GroupNorm's statistics are all that pixels share), so the SPN is equivariant to
any rearrangement of pixels: it can carry the input's structure into the reverse process but cannot move it. Its output is added to x_t at each reverse step
(weight 0.1 in the paper). The last convolution starts at zero, so an untrained SPN adds nothing.
"""
import math

import torch
from einops import rearrange
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding (Vaswani et al. 2017; as in DDPM / diffae), t of shape (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class TimeConditionedBlock(nn.Module):
    def __init__(self, channels: int, time_dim: int, groups: int):
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels)
        self.conv = nn.Conv2d(channels, channels, 1)
        self.to_scale_shift = nn.Linear(time_dim, 2 * channels)

    def forward(self, x: torch.Tensor, t_emb: torch.Tensor) -> torch.Tensor:
        scale, shift = rearrange(self.to_scale_shift(t_emb), "b (two c) -> two b c 1 1", two=2)
        return x + self.conv(nn.functional.silu(self.norm(x))) * (1 + scale) + shift


class StructurePreservingNetwork(nn.Module):
    def __init__(self, latent_channels: int = 4, width: int = 64, time_dim: int = 128, groups: int = 8):
        super().__init__()
        self.config = {"latent_channels": latent_channels, "width": width, "time_dim": time_dim, "groups": groups}
        self.time_dim = time_dim
        self.time_mlp = nn.Sequential(nn.Linear(time_dim, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim))
        self.conv_in = nn.Conv2d(latent_channels, width, 1)
        self.blocks = nn.ModuleList([TimeConditionedBlock(width, time_dim, groups) for _ in range(2)])
        self.conv_out = nn.Conv2d(width, latent_channels, 1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x_clean: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        """x_clean (B, C, H, W) latent of the input image, timestep (B,) -> (B, C, H, W) added to x_t."""
        t_emb = self.time_mlp(timestep_embedding(timestep, self.time_dim))
        h = self.conv_in(x_clean)
        for block in self.blocks:
            h = block(h, t_emb)
        return self.conv_out(h)
