"""Stage-1 style tokens: shards of per-image tokens plus an index, written atomically.

    OUTPUT_DIR/tokens-r<rank>-<n>.safetensors   tensors <text encoder> (rows, n_tokens, width), e.g. clip_l, clip_g
                                                 metadata stylesmith.format = "style_token_shard", format_version "1",
                                                 family, n_tokens, steps, dataset_fingerprint
    OUTPUT_DIR/index-r<rank>.json                {image id: {"shard", "row", "style", "caption"}}, rewritten
                                                 atomically after each shard, so a killed run loses at most the
                                                 batch in progress and a resumed run skips every finished image
    OUTPUT_DIR/losses-r<rank>.json               {shard: [loss per step]}, the inversion's loss curve of each
                                                 shard's batch, rewritten atomically with the index: the pictures
                                                 of a resumed run cover the whole run
Each rank writes its own files; `read_index` and `read_loss_curves` merge them, `load_tokens` is the one tensor
reader.
"""
import json
from pathlib import Path

import torch

from ..errors import expect_path
from .atomic_files import write_text_atomic
from .safe_files import WeightFileError, read_safetensors, reading_metadata, write_safetensors_atomic

FORMAT = "style_token_shard"
FORMAT_VERSION = "1"


def write_shard(folder: Path, rank: int, number: int, tokens: dict[str, torch.Tensor], records: dict[str, dict],
                metadata: dict[str, str], loss_curve: list[float]) -> None:
    """Write one shard, then add its records (id -> style, caption; row order = tokens' rows) to the rank's index
    and its batch's loss curve to the rank's loss file."""
    folder = Path(folder)
    shard = f"tokens-r{rank}-{number:05d}.safetensors"
    write_safetensors_atomic(tokens, folder / shard, {"stylesmith.format": FORMAT,
                                                      "stylesmith.format_version": FORMAT_VERSION, **metadata},
                             "stage-1 token shard")
    _update_json(folder / f"losses-r{rank}.json", "stage-1 loss curves", {shard: loss_curve})
    _update_json(folder / f"index-r{rank}.json", "stage-1 token index",
                 {image_id: dict(record, shard=shard, row=row) for row, (image_id, record) in enumerate(records.items())})


def _read_json(path: Path, what: str) -> dict:
    with reading_metadata(path, what):
        return json.loads(path.read_text())


def _update_json(path: Path, what: str, entries: dict) -> None:
    """Add `entries` to the JSON object at `path`, atomically: a kill leaves the old file or the new one."""
    content = _read_json(path, what) if path.is_file() else {}
    content.update(entries)
    write_text_atomic(path, what, json.dumps(content, indent=1))


def _merged(folder, pattern: str, what: str) -> dict:
    merged = {}
    for path in sorted(Path(folder).glob(pattern)):
        merged.update(_read_json(path, what))
    return merged


def read_index(folder) -> dict[str, dict]:
    return _merged(folder, "index-r*.json", "stage-1 token index")


def read_loss_curves(folder) -> dict[str, list[float]]:
    """{shard: the inversion's loss per step for that shard's batch}, over every rank and every run, in shard order."""
    return _merged(folder, "losses-r*.json", "stage-1 loss curves")


def load_tokens(folder, ids: list[str]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tokens of `ids` in that order as {text encoder: (len(ids), n_tokens, width)}, and the shards' metadata."""
    folder = expect_path(folder, "folder", "stage-1 token folder", "pass the --output-dir of a stage-1 run",
                         WeightFileError)
    index = read_index(folder)
    missing = [i for i in ids if i not in index]
    if missing:
        raise WeightFileError(f"{len(missing)} image(s) have no stage-1 tokens in {folder} (e.g. {missing[:3]}): "
                              "run stage 1 on the same dataset first, or let it finish.")
    shards, rows, metadata = {}, {}, {}
    for image_id in ids:
        shard = index[image_id]["shard"]
        if shard not in shards:
            shards[shard], metadata = read_safetensors(folder / shard, "stage-1 token shard")
        for key, tensor in shards[shard].items():
            rows.setdefault(key, []).append(tensor[index[image_id]["row"]])
    return {key: torch.stack(value) for key, value in rows.items()}, metadata
