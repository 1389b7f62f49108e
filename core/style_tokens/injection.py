"""Put style tokens where a placeholder word stands in a tokenised prompt (Chang, DESIGN §5.1).

Works on ComfyUI's token lists: per text encoder, chunks of `max_length` entries
`(token, weight, word_id)`, where `token` is an int id or an embedding vector and `word_id` is 0
for the start/end/pad entries. The placeholder's entries are replaced by the n style vectors (the
tokens after it shift right), which is textual-inversion style: the vectors enter the text
encoder at its input, get position embeddings added and run through the frozen transformer.
With no placeholder in the prompt the vectors go at its end. Chunks are then re-formed with
ComfyUI's own rule (a word of fewer than `max_word_length` entries never straddles two chunks),
so the result equals what ComfyUI makes of an `embedding:` in the same place.

That needs a tokenizer that gives every prompt word its own word id (CLIP's). The LLM encoders (Qwen3-4B of Flux.2
Klein and Z-Image) wrap the prompt in a chat template and give the whole of it one word id, and their BPE merges a
word with the space before it, so the placeholder's tokens cannot be found in the token list. For them the
placeholder is replaced in the text by an `embedding:NAME` reference (`reference_placeholders`) that ComfyUI's own
prompt reading resolves to the style vectors (comfy_adapter/style_prompt.py), so the tokens take the placeholder's
place inside the template.
"""
import re
from dataclasses import dataclass

import torch

from ..families import display_name, families_using, families_with_text_encoders, names, text_encoder

Entry = tuple  # (token: int | torch.Tensor, weight: float, word_id: int)


@dataclass(frozen=True)
class SpecialTokens:
    start: int | None
    end: int | None
    pad: int

    @classmethod
    def from_empty_prompt(cls, chunk: list[Entry]) -> "SpecialTokens":
        """Read start/end/pad ids off the tokenisation of an empty prompt: [start, end, pad, ...]."""
        ids = [e[0] for e in chunk]
        if len(ids) < 3:
            raise ValueError("cannot read start/end/pad tokens from a chunk shorter than 3 entries")
        return cls(start=ids[0], end=ids[1], pad=ids[2])


def content_words(chunks: list[list[Entry]]) -> list[list[Entry]]:
    """The prompt's words (entries grouped by word id), without start/end/pad entries."""
    words: list[list[Entry]] = []
    last_id = None
    for chunk in chunks:
        for entry in chunk:
            word_id = entry[2]
            if word_id == 0:
                continue
            if word_id != last_id:
                words.append([])
                last_id = word_id
            words[-1].append(entry)
    return words


def _is_placeholder(entries: list[Entry], start: int, placeholder_ids: list[int]) -> bool:
    window = entries[start:start + len(placeholder_ids)]
    return len(window) == len(placeholder_ids) and all(
        isinstance(e[0], int) and e[0] == p for e, p in zip(window, placeholder_ids))


def splice_style(words: list[list[Entry]], placeholder_ids: list[int], style: torch.Tensor) -> tuple[list, int]:
    """Replace every placeholder occurrence by the style vectors (n, width); append them if none.

    Returns (words, number of placeholders replaced). The vectors take the placeholder's weight,
    so ComfyUI's prompt weighting "(sks:1.2)" applies to the style too.
    """
    out, replaced = [], 0
    for word in words:
        i, kept = 0, []
        while i < len(word):
            if placeholder_ids and _is_placeholder(word, i, placeholder_ids):
                if kept:
                    out.append(kept)
                    kept = []
                out.append([(vector, word[i][1], -1) for vector in style])
                replaced += 1
                i += len(placeholder_ids)
            else:
                kept.append(word[i])
                i += 1
        if kept:
            out.append(kept)
    if replaced == 0:
        out.append([(vector, 1.0, -1) for vector in style])
    return out, replaced


def chunk_words(words: list[list[Entry]], special: SpecialTokens, max_length: int = 77,
                max_word_length: int = 8) -> list[list[Entry]]:
    """Lay words out in chunks of max_length as ComfyUI's SDTokenizer does; word ids renumbered 1..n."""
    has_end = 1 if special.end is not None else 0
    start_entries = [(special.start, 1.0, 0)] if special.start is not None else []
    chunks, batch = [], list(start_entries)
    chunks.append(batch)
    for index, word in enumerate(words):
        group = [(e[0], e[1], index + 1) for e in word]
        is_large = len(group) >= max_word_length
        while group:
            if len(group) + len(batch) > max_length - has_end:
                remaining = max_length - len(batch) - has_end
                if is_large:
                    batch.extend(group[:remaining])
                    group = group[remaining:]
                    if has_end:
                        batch.append((special.end, 1.0, 0))
                else:
                    if has_end:
                        batch.append((special.end, 1.0, 0))
                    batch.extend([(special.pad, 1.0, 0)] * remaining)
                batch = list(start_entries)
                chunks.append(batch)
            else:
                batch.extend(group)
                group = []
    if has_end:
        batch.append((special.end, 1.0, 0))
    batch.extend([(special.pad, 1.0, 0)] * (max_length - len(batch)))
    return chunks


def inject_style(chunks: list[list[Entry]], placeholder_ids: list[int], style: torch.Tensor,
                 special: SpecialTokens) -> tuple[list[list[Entry]], int]:
    """Tokenised prompt + style vectors (n, width) -> re-chunked tokens, number of placeholders replaced."""
    words, replaced = splice_style(content_words(chunks), placeholder_ids, style)
    return chunk_words(words, special, max_length=len(chunks[0])), replaced


def inject_into_prompt(tokenize, text: str, vectors: dict[str, torch.Tensor], placeholder: str) -> dict[str, list]:
    """Tokenise `text` with `tokenize` (ComfyUI's CLIP.tokenize with word ids) and put `vectors`
    ({"clip_l": (n, 768), "clip_g": (n, 1280)}) where `placeholder` stands, per text encoder.

    Nodes and trainers both encode through this, so their conditioning is the same by construction.
    """
    tokens, empty = tokenize(text), tokenize("")
    placeholder_tokens = tokenize(placeholder) if placeholder.strip() else None
    injected = {}
    for key, chunks in tokens.items():
        ids = [e[0] for e in placeholder_tokens[key][0] if e[2] != 0] if placeholder_tokens else []
        injected[key], _ = inject_style(chunks, ids, vectors[f"clip_{key}"], SpecialTokens.from_empty_prompt(empty[key][0]))
    return injected


def reference_placeholders(text: str, placeholder: str, reference: str) -> tuple[str, int]:
    """`text` with every placeholder word (not part of a longer word) replaced by `reference` ("embedding:NAME"),
    or with `reference` at its end when the placeholder is not there; returns (text, placeholders replaced).

    ComfyUI reads `embedding:` only after whitespace and ends the name at whitespace (or at commas followed by
    whitespace or the end), so a space is put before the reference where none is, and after it where anything
    else follows: "of sks, at night" and "of sks" stay as a user would type them with `embedding:NAME`, while
    "(sks)" becomes "( embedding:NAME )" instead of a name ComfyUI would not find.
    """
    def spaced(match: re.Match) -> str:
        before = "" if match.start() == 0 or text[match.start() - 1].isspace() else " "
        after = "" if re.match(r",*(\s|$)", text[match.end():]) else " "
        return f"{before}{reference}{after}"

    if placeholder.strip():
        replaced, count = re.subn(rf"(?<!\w){re.escape(placeholder)}(?!\w)", spaced, text)
        if count:
            return replaced, count
    return f"{text}{' ' if text and not text[-1].isspace() else ''}{reference}", 0


def check_widths(style_widths: dict[str, int], clip_widths: dict[str, int], family: str, clip_family: str) -> None:
    """Refuse style tokens that lack a head for one of the CLIP's text encoders (same embedding key, same width),
    naming the encoders on both sides and the fix. A head belongs to a text encoder, not to a family: heads for
    encoders this CLIP does not have are simply not used. `family` is the one the style encoder was trained with,
    `clip_family` the CLIP's."""
    missing = sorted(k for k, w in clip_widths.items() if style_widths.get(k) != w)
    if not missing:
        return

    def encoders(widths):
        shown = []
        for key, width in sorted(widths.items()):
            known = text_encoder(key)
            shown.append(f"{key} ({known.name}, {width})" if known else f"{key} ({width})")
        return ", ".join(shown)

    def heads(widths):
        keys = sorted(widths)
        return f"a {keys[0]} head" if len(keys) == 1 else f"{' and '.join(keys)} heads"

    trained_for = families_with_text_encoders(clip_widths)
    served = families_using(style_widths)
    raise ValueError(
        f"Token width mismatch: the style tokens are for {display_name(family)}, with heads for "
        f"{encoders(style_widths)}, but this CLIP is {display_name(clip_family)}'s, with {encoders(clip_widths)}: no "
        f"head for {', '.join(missing)}. Load a style encoder with {heads(clip_widths)}"
        + (f" (trained for {names(trained_for, 'or')})" if trained_for else "")
        + (f", or use the CLIP of {names(served, 'or')}." if served else "."))
