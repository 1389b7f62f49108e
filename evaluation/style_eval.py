"""Style retrieval: k-nearest-neighbour style-label accuracy on a labelled set, for
(a) a StyleSmith style encoder (its style tokens), (b) the raw backbone it starts from (pooled features
of the same architecture with its initial weights: --baseline-clip-vision, else a random init), and
(c) a Gram-matrix texture baseline (Gatys et al. 2016, eq. 3) on a fixed random filter bank, since no
VGG weights can be downloaded. Leave-one-out cosine kNN; prints a table and writes a CSV.

    python -m evaluation.style_eval --data heldout.jsonl --encoder enc/style_encoder.safetensors --csv retrieval.csv
"""
import argparse
import csv
from pathlib import Path

import torch
import torch.nn.functional as F

from core.data.image_preprocess import preprocess
from core.data.image_stream import load_images
from core.data.style_dataset import read_style_dataset
from core.style_tokens.encoder import StyleEncoder
from core.formats.style_encoder_file import load_style_encoder



def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="labelled images: manifest or Style30K-style folder")
    p.add_argument("--encoder", type=Path, required=True, help="a style-encoder .safetensors file")
    p.add_argument("--baseline-clip-vision", type=Path, help="the CLIP-vision file the encoder started from")
    p.add_argument("--k", type=int, default=5, help="neighbours that vote")
    p.add_argument("--csv", type=Path, help="where to write the table (default: next to the encoder)")
    args = p.parse_args(argv)
    if args.k < 1:
        p.error("--k must be at least 1")
    return args


def knn_accuracy(features: torch.Tensor, labels: list[str], k: int) -> float:
    """Leave-one-out: each item's label is the majority label of its k most cosine-similar others.
    Features are centred first: style tokens share a large mean token that would swamp the cosine."""
    x = features.flatten(1).float()
    z = F.normalize(x - x.mean(0, keepdim=True), dim=1)
    similarity = z @ z.t()
    similarity.fill_diagonal_(-2.0)
    neighbours = similarity.topk(min(k, len(labels) - 1), dim=1).indices
    correct = 0
    for i, row in enumerate(neighbours.tolist()):
        votes = {}
        for rank, j in enumerate(row):             # ties go to the label whose nearest member is closer
            count, first = votes.get(labels[j], (0, rank))
            votes[labels[j]] = (count + 1, first)
        winner = max(votes, key=lambda label: (votes[label][0], -votes[label][1]))
        correct += winner == labels[i]
    return correct / len(labels)


def gram_features(images: torch.Tensor, size: int = 64, channels: int = 16, seed: int = 0) -> torch.Tensor:
    """Gram matrices of a fixed random 3x3 filter bank at two scales: a texture/style descriptor."""
    x = images.permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    filters = torch.randn(channels, 3, 3, 3, generator=torch.Generator().manual_seed(seed))
    grams = []
    for scale in (1, 2):
        f = F.relu(F.conv2d(F.avg_pool2d(x, scale) if scale > 1 else x, filters, padding=1)).flatten(2)
        grams.append((f @ f.transpose(1, 2) / f.shape[-1]).flatten(1))
    return torch.cat(grams, dim=1)


@torch.no_grad()
def evaluate(data, encoder: StyleEncoder, baseline: torch.nn.Module, k: int) -> dict[str, float]:
    dataset = read_style_dataset(data)
    labels = [e.style for e in dataset.examples]
    spec = encoder.config.preprocess
    images = load_images([e.image for e in dataset.examples], spec.size)
    pixels = preprocess(images, spec)
    ours = torch.cat([t.flatten(1) for t in encoder(pixels).values()], dim=1)
    return {"style encoder (tokens)": knn_accuracy(ours, labels, k),
            "raw backbone (pooled)": knn_accuracy(baseline(pixels), labels, k),
            "Gram matrices": knn_accuracy(gram_features(images), labels, k),
            "chance": 1 / len(set(labels))}


def raw_backbone(encoder: StyleEncoder, clip_vision: Path | None) -> torch.nn.Module:
    if clip_vision is not None:
        from core.formats.clip_vision_import import style_encoder_from_clip_vision_file
        return style_encoder_from_clip_vision_file(clip_vision, encoder.config.family, encoder.config.heads).backbone.eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return StyleEncoder(encoder.config).backbone.eval()


def main(args) -> dict[str, float]:
    encoder = load_style_encoder(args.encoder)
    results = evaluate(args.data, encoder, raw_backbone(encoder, args.baseline_clip_vision), args.k)
    path = args.csv or args.encoder.with_name("style_retrieval.csv")
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["features", f"knn@{args.k} style accuracy"])
        writer.writerows((name, f"{value:.4f}") for name, value in results.items())
    width = max(map(len, results))
    print(f"{'features':<{width}}  kNN@{args.k} style accuracy")
    for name, value in results.items():
        print(f"{name:<{width}}  {value:.3f}")
    print(f"written: {path}")
    return results


if __name__ == "__main__":
    main(parse_args())
