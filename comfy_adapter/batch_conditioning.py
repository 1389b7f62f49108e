"""A batch of prompts as one conditioning batch, the way ComfyUI's sampler batches them.

Captions may be of any length. ComfyUI encodes a prompt past the text encoder's 77 tokens as several 77-token chunks
whose outputs are concatenated along the token axis (so the UNet reads the whole prompt), and when it batches
conditionings of different lengths it repeats each along that axis to their least common multiple
(`comfy.conds.CONDCrossAttn.concat`): cross-attention over a sequence repeated k times gives the same output, so
every row conditions the UNet exactly as it would alone. `join_conditionings` joins rows with that same code; the
style-token trainers hand their rows to ComfyDiffusion.diffusion_losses, which joins them as ComfyUI's sampler would
for the model at hand (a DiT's text tokens of different lengths are not joined: they run in separate passes).

`encode_prompts_with_style` runs the text encoder once for the whole batch: every row's chunks go through ComfyUI's
`encode_from_tokens` as one token list (the encoder encodes chunks as independent rows of one batch), and the output
is split back into rows. ComfyUI returns the pooled output of the first chunk only, so the pooled output of every
chunk is read off the forward pass of the encoder that produced it.
"""
import torch

from .style_prompt import tokenize_with_style


def join_conditionings(conds: list[torch.Tensor]) -> torch.Tensor:
    """(1, L_i, width) conditionings -> (N, lcm(L_i), width), with ComfyUI's own batching rule."""
    from comfy.conds import CONDCrossAttn
    first, *others = [CONDCrossAttn(cond) for cond in conds]
    return first.concat(others)


def encode_prompts_with_style(diffusion, texts: list[str], vectors: dict[str, torch.Tensor],
                              placeholder: str) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    """(conds, pooled) for a batch: conds[i] (1, L_i, width) is `texts[i]` with `vectors[key][i]` in place of the
    placeholder, equal (up to float rounding) to `encode_prompt_with_style(diffusion, texts[i], ...)` alone; pooled
    holds one row per text, or is None for families without a pooled vector. One text-encoder pass for the batch;
    differentiable w.r.t. the vectors."""
    rows = [tokenize_with_style(diffusion.clip, text, {k: v[i] for k, v in vectors.items()}, placeholder)
            for i, text in enumerate(texts)]
    counts = [{key: len(chunks) for key, chunks in row.items()} for row in rows]
    chunks = [next(iter(c.values())) for c in counts]
    if any(len(set(c.values())) != 1 for c in counts):
        raise ValueError(f"The text encoders split a prompt into different numbers of chunks ({counts}); "
                         "batched encoding needs the same number for every encoder.")
    merged = {key: [chunk for row in rows for chunk in row[key]] for key in rows[0]}
    with _PooledPerChunk(diffusion.text_encoder_module) as pooled_per_chunk:
        out = diffusion.clip.encode_from_tokens(merged, return_pooled=True, return_dict=True)
    cond, first_pooled = out["cond"].to(diffusion.device), out["pooled_output"]
    length = cond.shape[1] // sum(chunks)
    conds = list(torch.split(cond, [n * length for n in chunks], dim=1))
    starts = [sum(chunks[:i]) for i in range(len(chunks))]
    pooled = None if first_pooled is None else pooled_per_chunk.rows(first_pooled, starts).to(diffusion.device)
    return conds, pooled


class _PooledPerChunk:
    """Records the pooled output of every chunk from the forward passes of a CLIP's text encoders (ComfyUI's
    ClipTokenWeightEncoder modules), to find which encoder's first chunk is the pooled output ComfyUI returned."""

    def __init__(self, text_encoder: torch.nn.Module):
        from comfy.sd1_clip import ClipTokenWeightEncoder
        self.encoders = [m for m in text_encoder.modules() if isinstance(m, ClipTokenWeightEncoder)]
        self.seen: list[torch.Tensor] = []

    def __enter__(self):
        self.handles = [m.register_forward_hook(self._record) for m in self.encoders]
        return self

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()

    def _record(self, module, inputs, output) -> None:
        if isinstance(output, tuple) and len(output) > 1 and isinstance(output[1], torch.Tensor):
            self.seen.append(output[1])

    def rows(self, first_pooled: torch.Tensor, starts: list[int]) -> torch.Tensor:
        """The pooled rows at chunk indices `starts`, from the encoder whose chunk 0 ComfyUI returned."""
        for pooled in self.seen:
            if pooled.shape[-1] == first_pooled.shape[-1] and torch.equal(pooled[:1].to(first_pooled), first_pooled):
                return pooled[starts].to(first_pooled)
        raise RuntimeError("No text encoder's forward pass produced the pooled output ComfyUI returned; this ComfyUI "
                           "encodes prompts in a way StyleSmith's batched encoding does not know.")
