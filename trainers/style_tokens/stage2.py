"""Style tokens, stage 2 (Chang, DESIGN §5.1): feed-forward style-encoder pre-training.

The encoder (CLIP vision backbone, fully trainable, pooled feature; one head per text encoder)
learns to predict each image's stage-1 tokens:   L = sum_k || head_k(E(x)) - V_k ||^2   (MSE)
plus, optionally, a supervised contrastive term on the backbone features with the style labels
(Khosla et al. 2020, eq. 2), weight --contrastive-weight: stage-1 tokens fitted on a random model carry
no style, and real ones only a little, so the label term is what makes features cluster by style.
A held-out split reports MSE against the mean-token baseline. Paper defaults: AdamW lr 1e-4, batch 8,
10 epochs, 224 px, mean/std 0.5. Writes OUTPUT_DIR/style_encoder.safetensors, loss.png,
embedding_map.png (PCA of held-out features by style) and metrics.json.

    python -m trainers.style_tokens.stage2 --data manifest.jsonl --tokens tokens/ --output-dir enc/ \\
        [--init-clip-vision models/clip_vision/clip_vit_l.safetensors | --pretrained openai | --random-init]
"""
import argparse
import json
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from core.data.image_preprocess import Preprocess, preprocess
from core.data.image_stream import image_batches, indexed_batches
from core.data.style_dataset import read_style_dataset
from core.style_tokens.encoder import StyleEncoder, StyleEncoderConfig
from core.formats.atomic_files import write_text_atomic
from core.formats.style_encoder_file import save_style_encoder
from core.formats.token_shards import load_tokens

from .. import cli, common
from ..precision import Precision
from ..training_loop import TrainingLoop

NORMALISATIONS = {"authors": ((0.5,) * 3, (0.5,) * 3),
                  "clip": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="the manifest or folder stage 1 ran on")
    p.add_argument("--tokens", type=Path, required=True, help="stage 1's output folder (token shards + index)")
    b = p.add_argument_group("backbone (pretrained by default, as in the paper)")
    b.add_argument("--architecture", default="ViT-L-14-quickgelu", help="open_clip architecture (default: the paper's "
                                                                         "CLIP ViT-L/14)")
    start = b.add_mutually_exclusive_group()
    start.add_argument("--pretrained", default="openai",
                       help="open_clip pretrained tag of --architecture, downloaded once by open_clip (default openai), "
                            "or the path of an open_clip checkpoint file")
    start.add_argument("--init-clip-vision", type=Path, help="start the backbone from a ComfyUI models/clip_vision file")
    start.add_argument("--random-init", action="store_true",
                       help="start the backbone from random weights (tests; the paper starts from pretrained CLIP)")
    p.add_argument("--image-size", type=int, help="encoder input size (default: the backbone's)")
    p.add_argument("--normalisation", choices=sorted(NORMALISATIONS), default="authors",
                   help="authors: mean = std = 0.5 (the paper's code); clip: CLIP's mean/std")
    p.add_argument("--holdout", type=float, default=0.1, help="fraction of images held out for evaluation")
    p.add_argument("--batch-size", type=int, default=8, help="images per step (per rank)")
    p.add_argument("--epochs", type=float, default=10, help="passes over the training split (paper: 10)")
    p.add_argument("--contrastive-weight", type=float, default=0.0, help="weight of the style-label term (0: off)")
    p.add_argument("--temperature", type=float, default=0.1, help="temperature of the contrastive term")
    p.add_argument("--workers", type=int, default=2, help="processes decoding images ahead of training")
    p.add_argument("--augment", action="store_true",
                   help="random flips, quarter turns and crops of each batch, so features follow style, not layout")
    common.add_common_args(p, steps=0, lr=1e-4, save_every=200, steps_help="optimiser steps; 0: from --epochs",
                           grad_accum=False, base_model=False)
    args = p.parse_args(argv)
    common.check_common_args(p, args, zero_steps_means="steps from --epochs")
    if not 0 < args.holdout < 1:
        p.error(f"--holdout must be between 0 and 1 (got {args.holdout})")
    return args


def supervised_contrastive(features: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """SupCon: pull together features of the same style, push apart the others (cosine similarities)."""
    z = F.normalize(features.float(), dim=-1)
    logits = z @ z.t() / temperature
    eye = torch.eye(len(z), dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(eye, -1e9)
    positives = (labels[:, None] == labels[None, :]) & ~eye
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    has_positive = positives.any(dim=1)
    if not has_positive.any():
        return features.sum() * 0.0
    return -((log_prob * positives).sum(1)[has_positive] / positives.sum(1)[has_positive]).mean()


def build_encoder(args, family: str, widths: dict[str, int], n_tokens: int) -> StyleEncoder:
    mean, std = NORMALISATIONS[args.normalisation]
    if args.init_clip_vision:
        from core.formats.clip_vision_import import style_encoder_from_clip_vision_file
        encoder = style_encoder_from_clip_vision_file(args.init_clip_vision, family, widths, n_tokens)
        size = args.image_size or encoder.config.preprocess.size
        encoder.config.preprocess = Preprocess(size, mean, std)
        return encoder
    from core.style_tokens.clip_backbones import backbone_config, pretrained_visual_state
    config = backbone_config(args.architecture)
    size = args.image_size or config["vision_cfg"]["image_size"]
    encoder = StyleEncoder(StyleEncoderConfig(family=family, architecture=args.architecture, backbone_config=config,
                                              heads=dict(widths), n_tokens=n_tokens,
                                              preprocess=Preprocess(size, mean, std)))
    if not args.random_init:
        state = pretrained_visual_state(args.architecture, args.pretrained)
        encoder.backbone.load_state_dict({k: v for k, v in state.items() if k != "proj"})   # pooled, as the paper
    return encoder


def backbone_source(args) -> str:
    if args.init_clip_vision:
        return f"from {args.init_clip_vision.name}"
    return "random (--random-init)" if args.random_init else f"pretrained {args.pretrained}"


def augment(pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Per image: a random crop of 60-100 % of the side resized back, a random quarter turn and flip."""
    size = pixels.shape[-1]
    out = []
    for image in pixels:
        side = int(size * (0.6 + 0.4 * torch.rand(1, generator=generator).item()))
        top, left = (torch.randint(0, size - side + 1, (2,), generator=generator)).tolist()
        crop = F.interpolate(image[None, :, top:top + side, left:left + side], size=(size, size), mode="bilinear",
                             align_corners=False)[0]
        crop = torch.rot90(crop, int(torch.randint(0, 4, (1,), generator=generator)), dims=(1, 2))
        out.append(crop.flip(-1) if torch.rand(1, generator=generator).item() < 0.5 else crop)
    return torch.stack(out)


def state_is_fresh(args) -> bool:
    return args.no_resume or not (args.output_dir / common.CHECKPOINT_NAME).is_file()


def start_at_the_mean_token(encoder: StyleEncoder, targets: dict[str, torch.Tensor]) -> None:
    """Heads start as the mean-token baseline (bias = mean training token, small weights), so training
    begins where the baseline ends and learns only what images add to it."""
    with torch.no_grad():
        for key, head in encoder.heads.items():
            head.bias.copy_(targets[key].float().mean(0).flatten())
            head.weight.mul_(0.01)


def split(examples, holdout: float, seed: int):
    order = torch.randperm(len(examples), generator=torch.Generator().manual_seed(seed)).tolist()
    n_held = max(1, round(holdout * len(examples)))
    return [examples[i] for i in sorted(order[n_held:])], [examples[i] for i in sorted(order[:n_held])]


def token_mse(predicted: dict, target: dict) -> torch.Tensor:
    return sum(F.mse_loss(predicted[k].float(), target[k].float()) for k in target) / len(target)


@torch.no_grad()
def encode_all(encoder: StyleEncoder, examples, workers: int, batch: int = 32) -> tuple[torch.Tensor, dict]:
    """(features, tokens) of every example, read in batches."""
    features, tokens = [], {}
    device = next(encoder.parameters()).device
    for images in image_batches([e.image for e in examples], encoder.config.preprocess.size, batch, workers):
        f = encoder.features(preprocess(images, encoder.config.preprocess).to(device))
        features.append(f.cpu())
        for k, head in encoder.heads.items():
            tokens.setdefault(k, []).append(head(f).view(len(f), encoder.config.n_tokens, -1).cpu())
    return torch.cat(features), {k: torch.cat(v) for k, v in tokens.items()}


def write_results(encoder: StyleEncoder, args, dataset, train_set, held_out, targets: dict, held_targets: dict,
                  history: dict, steps: int) -> dict:
    """Held-out metrics against the mean-token baseline, the encoder file, loss curves and the embedding map."""
    _, held_predicted = encode_all(encoder, held_out, args.workers)
    baseline = {k: v.mean(0, keepdim=True).expand_as(held_targets[k]) for k, v in targets.items()}
    metrics = {"held_out_mse": token_mse(held_predicted, held_targets).item(),
               "mean_token_baseline_mse": token_mse(baseline, held_targets).item(),
               "train_images": len(train_set), "held_out_images": len(held_out), "steps": steps}
    write_text_atomic(args.output_dir / "metrics.json", "metrics", json.dumps(metrics, indent=1))
    encoder.config.training = {"stage": 2, "steps": steps, "dataset_fingerprint": dataset.fingerprint(),
                               "contrastive_weight": args.contrastive_weight, **metrics}
    save_style_encoder(encoder.cpu(), args.output_dir / "style_encoder.safetensors")
    common.plot_losses(history, args.output_dir / "loss.png", "stage 2: encoder pre-training")
    all_features, _ = encode_all(encoder, train_set + held_out, args.workers)
    common.plot_embedding_map(all_features, [e.style for e in train_set + held_out], args.output_dir / "embedding_map.png",
                              "stage 2 encoder features (PCA), by style")
    print(f"held-out token MSE {metrics['held_out_mse']:.5f} vs mean-token baseline "
          f"{metrics['mean_token_baseline_mse']:.5f}\nencoder: {args.output_dir / 'style_encoder.safetensors'}")
    return metrics


def train(args) -> dict:
    world = common.init_distributed(args.device)
    precision = Precision.resolve(args.precision, world.device)
    dataset = read_style_dataset(args.data)
    train_set, held_out = split(dataset.examples, args.holdout, args.seed)
    targets, metadata = load_tokens(args.tokens, [e.id for e in train_set])
    held_targets, _ = load_tokens(args.tokens, [e.id for e in held_out])
    widths = {k: v.shape[-1] for k, v in targets.items()}
    torch.manual_seed(args.seed)
    encoder = build_encoder(args, metadata["stylesmith.family"], widths, next(iter(targets.values())).shape[1])
    if state_is_fresh(args):
        start_at_the_mean_token(encoder, targets)
    encoder = encoder.to(world.device)
    styles = {s: i for i, s in enumerate(dataset.styles)}
    labels = torch.tensor([styles[e.style] for e in train_set])
    steps = args.steps or max(1, math.ceil(args.epochs * len(train_set) / args.batch_size))
    common.print_run_summary("Style tokens, stage 2: encoder pre-training", args, {
        "encoder": f"{encoder.config.architecture} {backbone_source(args)}, heads {widths}, "
                   f"{encoder.config.n_tokens} tokens",
        "data": f"{len(train_set)} train / {len(held_out)} held out, {len(styles)} styles", "steps": steps,
        "precision": precision.describe()}, world)
    loop = TrainingLoop(args, world, precision, torch.optim.AdamW(encoder.parameters(), lr=args.lr), {"model": encoder})

    def pick(step: int) -> tuple[torch.Tensor, torch.Generator]:
        """This rank's rows of step `step` and the generator that then augments them: a function of (seed, step)."""
        generator = common.step_generator(args.seed, step)
        batch = torch.randperm(len(train_set), generator=generator)[:args.batch_size * world.world_size]
        return batch[world.rank::world.world_size], generator

    images = indexed_batches([e.image for e in train_set], encoder.config.preprocess.size,
                             (pick(step)[0].tolist() for step in range(loop.start, steps)), args.workers)

    def micro_step(step: int):
        batch, generator = pick(step)
        pixels = preprocess(next(images), encoder.config.preprocess)
        x = (augment(pixels, generator) if args.augment else pixels).to(world.device)
        features = encoder.features(x)
        predicted = {k: head(features).view(len(x), encoder.config.n_tokens, -1) for k, head in encoder.heads.items()}
        mse = token_mse(predicted, {k: v[batch].to(world.device) for k, v in targets.items()})
        if args.contrastive_weight == 0:
            return mse, {"token MSE": mse.item()}
        contrastive = supervised_contrastive(features, labels[batch].to(world.device), args.temperature)
        return mse + args.contrastive_weight * contrastive, {"token MSE": mse.item(), "contrastive": contrastive.item()}

    encoder.train()
    history = loop.run(steps, lambda step: loop.accumulated_step(lambda: micro_step(step)), "stage 2")
    encoder.eval()
    metrics = {}
    if world.is_main:
        metrics = write_results(encoder, args, dataset, train_set, held_out, targets, held_targets, history, steps)
    world.barrier()
    world.close()
    return metrics


def main(args) -> None:
    train(args)


if __name__ == "__main__":
    sys.exit(cli.run(main, parse_args))
