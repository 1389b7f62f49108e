"""Gradients through ComfyUI's LLM text encoders (Qwen3-4B of Flux.2 Klein and Z-Image), for style-token training.

ComfyUI 0.33.0's Llama-family block (comfy.text_encoders.llama.TransformerBlock) adds its last residual into the
block's input buffer (`torch.add(residual, x, out=output)`) to save memory. Autograd refuses `out=` once the input
requires grad, which it does when style vectors being trained enter the prompt. For such a block, training uses a
forward with the same operations in the same order, adding the residual out of place: values are unchanged, and
sampling (no gradients) still runs ComfyUI's own forward. Blocks that add out of place are left alone.
"""
import inspect
import types

import torch


def _differentiable_forward(self, x, attention_mask=None, freqs_cis=None, optimized_attention=None,
                            past_key_value=None):
    if not torch.is_grad_enabled():
        return type(self).forward(self, x, attention_mask=attention_mask, freqs_cis=freqs_cis,
                                  optimized_attention=optimized_attention, past_key_value=past_key_value)
    attended, present_key_value = self.self_attn(hidden_states=self.input_layernorm(x), attention_mask=attention_mask,
                                                 freqs_cis=freqs_cis, optimized_attention=optimized_attention,
                                                 past_key_value=past_key_value)
    x = x + attended
    return x + self.mlp(self.post_attention_layernorm(x)), present_key_value


def _adds_in_place(block: torch.nn.Module) -> bool:
    try:
        source = inspect.getsource(type(block).forward)
    except (OSError, TypeError):
        return False
    return "out=output" in source and all(hasattr(block, n) for n in ("self_attn", "mlp", "input_layernorm",
                                                                      "post_attention_layernorm"))


def allow_llm_gradients(text_encoder: torch.nn.Module) -> int:
    """Give every in-place Llama block of `text_encoder` the out-of-place forward while gradients are on; returns how
    many blocks it changed."""
    blocks = [m for m in text_encoder.modules() if _adds_in_place(m)]
    for block in blocks:
        block.forward = types.MethodType(_differentiable_forward, block)
    return len(blocks)
