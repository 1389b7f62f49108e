"""Mixed precision for the trainers: the dtype the forward pass computes in, and loss scaling for fp16.

Trainable weights (LoRA, SPN, heads, style tokens) stay fp32 whatever the precision; the frozen base is held in
the dtype ComfyUI loads it in (`--precision` tells ComfyUI which, see comfy_adapter.host.WEIGHT_DTYPE_OPTIONS),
and the forward pass computes in that dtype. fp16 gradients underflow, so fp16 scales the loss (GradScaler).
"""
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch

CHOICES = ("auto", "fp32", "bf16", "fp16")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
NAMES = {dtype: name for name, dtype in DTYPES.items()}


@dataclass
class Precision:
    compute: torch.dtype
    device: torch.device
    scaler: torch.amp.GradScaler = field(init=False)

    def __post_init__(self):
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.compute == torch.float16)

    @classmethod
    def resolve(cls, requested: str, device: torch.device, base_dtype: torch.dtype | None = None) -> "Precision":
        """`requested` from --precision; "auto" computes in the dtype the frozen base was loaded in, or, for a
        trainer without one, in bf16 on an accelerator that has it and fp32 elsewhere."""
        if requested != "auto":
            return cls(DTYPES[requested], device)
        if base_dtype is None:
            base_dtype = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
        return cls(base_dtype if base_dtype in NAMES else torch.float32, device)

    @property
    def name(self) -> str:
        return NAMES[self.compute]

    def autocast(self):
        if self.compute == torch.float32:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.compute)

    def backward(self, loss: torch.Tensor) -> None:
        self.scaler.scale(loss).backward()

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """The optimiser step on unscaled gradients (skipped by the scaler if fp16 overflowed), then clear them."""
        self.scaler.step(optimizer)
        self.scaler.update()
        optimizer.zero_grad(set_to_none=True)

    def describe(self) -> str:
        return f"computes in {self.name}, trainable weights fp32" + (", loss scaling" if self.scaler.is_enabled() else "")
