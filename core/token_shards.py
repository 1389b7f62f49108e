"""Stage-1 style tokens: shards of per-image tokens plus an index, written atomically.

    OUTPUT_DIR/tokens-r<rank>-<n>.safetensors   tensors <text encoder> (rows, n_tokens, width), e.g. clip_l, clip_g
                                                 metadata stylesmith.format = "style_token_shard", format_version "1",
                                                 family, n_tokens, steps, dataset_fingerprint
    OUTPUT_DIR/index-r<rank>.json                {image id: {"shard", "row", "style", "caption"}}, rewritten
                                                 atomically after each shard, so a killed run loses at most the
                                                 batch in progress and a resumed run skips every finished image
Each rank writes its own files; `read_index` merges them, `load_tokens` is the one tensor reader.
"""
import json
import os
from pathlib import Path

import torch

from .safe_files import WeightFileError, read_safetensors, write_safetensors_atomic

FORMAT = "style_token_shard"
FORMAT_VERSION = "1"


def write_shard(folder: Path, rank: int, number: int, tokens: dict[str, torch.Tensor], records: dict[str, dict],
                metadata: dict[str, str]) -> None:
    """Write one shard, then add its records (id -> style, caption; row order = tokens' rows) to the rank's index."""
    folder = Path(folder)
    shard = f"tokens-r{rank}-{number:05d}.safetensors"
    write_safetensors_atomic(tokens, folder / shard, {"stylesmith.format": FORMAT,
                                                      "stylesmith.format_version": FORMAT_VERSION, **metadata})
    index_path = folder / f"index-r{rank}.json"
    index = json.loads(index_path.read_text()) if index_path.is_file() else {}
    for row, (image_id, record) in enumerate(records.items()):
        index[image_id] = dict(record, shard=shard, row=row)
    tmp = folder / f".index-r{rank}.json.partial"
    tmp.write_text(json.dumps(index, indent=1))
    os.replace(tmp, index_path)


def read_index(folder) -> dict[str, dict]:
    index = {}
    for path in sorted(Path(folder).glob("index-r*.json")):
        index.update(json.loads(path.read_text()))
    return index


def load_tokens(folder, ids: list[str]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tokens of `ids` in that order as {text encoder: (len(ids), n_tokens, width)}, and the shards' metadata."""
    folder = Path(folder)
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
