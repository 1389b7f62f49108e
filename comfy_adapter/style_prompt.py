"""A prompt tokenised with style vectors in the placeholder's place, for every text encoder ComfyUI has.

CLIP encoders (SD1.x, SDXL): core.style_tokens.injection splices the vectors into ComfyUI's token list, found by
word id. Other encoders (the Qwen3-4B of Flux.2 Klein and Z-Image: a chat template, one word id for the whole prompt):
the placeholder becomes an `embedding:NAME` reference in the text, and ComfyUI's own prompt reading resolves it,
for this call only, to a file holding the vectors in a temporary folder put first in the tokenizers'
`embedding_directory`. So the tokens equal, entry for entry, those of a stock CLIPTextEncode given `embedding:NAME`
with the same vectors (the exported file), quirks included: ComfyUI keeps the space before the reference as a token
and, for a reference at the end of the prompt, reads the template's line breaks after it as spaces.

The entries ComfyUI loaded from the file are then swapped for the caller's own vectors (equal values), so a trainer's
vectors keep their gradient.
"""
import os
import tempfile
from contextlib import contextmanager

import torch
from safetensors.torch import save_file

from .core_modules import errors, families, token_injection
from .families import text_encoder_tokenizers

STYLE_EMBEDDING = "stylesmith_style_tokens_in_place"   # found before any user embedding: its folder comes first


def tokenize_with_style(clip, text: str, vectors: dict[str, torch.Tensor], placeholder: str) -> dict[str, list]:
    """ComfyUI tokens of `text` with `vectors` ({embedding key: (n, width)}) where `placeholder` stands (at the end
    without it), ready for the CLIP's encode."""
    tokenizers = text_encoder_tokenizers(clip)
    if all(families.text_encoder_kind(t.embedding_key) == "clip" for t in tokenizers.values()):
        return token_injection.inject_into_prompt(lambda t: clip.tokenize(t, return_word_ids=True), text, vectors,
                                                  placeholder)
    unread = sorted(key for key, t in tokenizers.items() if t.embedding_directory is None)
    if unread:
        raise errors.UserValueError(
            f"This ComfyUI builds the {', '.join(unread)} tokenizer without an embeddings folder, so it reads no "
            "`embedding:` and style tokens cannot reach that text encoder (Z-Image on ComfyUI 0.3.75): update ComfyUI.")
    referenced, count = token_injection.reference_placeholders(text, placeholder, f"embedding:{STYLE_EMBEDDING}")
    with vectors_as_embedding(tokenizers.values(), vectors):
        tokens = clip.tokenize(referenced)
    return {key: _own_vectors(chunks, vectors[tokenizers[key].embedding_key], max(count, 1), key)
            for key, chunks in tokens.items()}


@contextmanager
def vectors_as_embedding(tokenizers, vectors: dict[str, torch.Tensor]):
    """While open, `embedding:STYLE_EMBEDDING` resolves to `vectors` in these ComfyUI tokenizers."""
    saved = [(t, t.embedding_directory) for t in tokenizers]
    with tempfile.TemporaryDirectory(prefix="stylesmith-style-") as folder:
        save_file({k: v.detach().float().cpu().contiguous() for k, v in vectors.items()},
                  os.path.join(folder, f"{STYLE_EMBEDDING}.safetensors"))
        try:
            for tokenizer, directories in saved:
                others = [directories] if isinstance(directories, str) else list(directories or [])
                tokenizer.embedding_directory = [folder, *others]
            yield
        finally:
            for tokenizer, directories in saved:
                tokenizer.embedding_directory = directories


def _own_vectors(chunks: list, style: torch.Tensor, occurrences: int, key: str) -> list:
    """The chunks with each run of entries equal to the style rows swapped for `style`'s own rows; an error when
    ComfyUI did not place the style as often as the prompt names it."""
    rows = style.detach().float().cpu()
    out, placed = [], 0
    for chunk in chunks:
        out.append([])
        i = 0
        while i < len(chunk):
            window = chunk[i:i + len(rows)]
            if len(window) == len(rows) and all(torch.is_tensor(e[0]) and torch.equal(e[0].float(), r)
                                                for e, r in zip(window, rows)):
                out[-1].extend((row, *entry[1:]) for row, entry in zip(style, window))
                placed += 1
                i += len(rows)
            else:
                out[-1].append(chunk[i])
                i += 1
    if placed != occurrences:
        raise RuntimeError(f"ComfyUI placed the style tokens {placed} times in the {key} prompt, not {occurrences}: "
                           "its `embedding:` reading changed. Report this with your ComfyUI version.")
    return out
