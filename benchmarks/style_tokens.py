"""Benchmark: sampling with style tokens vs plain text, style-encoder time per image, peak memory.

Both graphs run in one process on the real ComfyUI: checkpoint -> text encode (plain) or
style encoder + image -> tokens -> prompt with style (style) -> KSampler -> VAE decode.
Each timed run changes the seed, so ComfyUI's cache keeps the encodes and only sampling and
decoding re-run; plain and style runs alternate. Printed: ratios measured in this run.

    python -m benchmarks.style_tokens                 # tiny SD1.5, 64 px, 4 steps
    python -m benchmarks.style_tokens --full-size     # full SD1.5 + ViT-L/14 encoder, random weights, 512 px
"""
import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch

from devkit import paths
from devkit.example_inputs import STYLE_REFERENCE


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--full-size", action="store_true", help="full SD1.5 architecture and a ViT-L/14 style encoder")
    p.add_argument("--size", type=int, help="image size in pixels (default 64, or 512 with --full-size)")
    p.add_argument("--steps", type=int, default=4, help="sampling steps per run")
    p.add_argument("--runs", type=int, default=5, help="timed runs per graph")
    p.add_argument("--encoder-images", type=int, default=8, help="images for the encoder-time measurement")
    p.add_argument("--gpu", action="store_true", help="let ComfyUI use the GPU (default: CPU)")
    args = p.parse_args(argv)
    args.size = args.size or (512 if args.full_size else 64)
    if args.runs < 1 or args.steps < 1:
        p.error("--runs and --steps must be at least 1")
    return args


def prepare_models(work: Path, full_size: bool) -> tuple[Path, str, str]:
    """An extra_model_paths.yaml and the checkpoint / encoder names the graphs load."""
    if not full_size:
        config = paths.write_extra_model_paths(work / "models.yaml", {
            kind: paths.models_dir() / kind for kind in ("checkpoints", "style_encoders")})
        return config, "stylesmith-tiny-sd15.safetensors", "stylesmith-tiny-style-encoder-sd15.safetensors"
    from core.style_tokens.clip_backbones import backbone_config
    from core.data.image_preprocess import Preprocess
    from core.style_tokens.encoder import StyleEncoder, StyleEncoderConfig
    from core.formats.style_encoder_file import save_style_encoder
    from devkit.tiny_models import build_checkpoint
    models = work / "models"
    build_checkpoint(models / "checkpoints" / "full-sd15.safetensors", "sd15", "full", text_encoder_dtype="fp16")
    architecture = "ViT-L-14-quickgelu"
    encoder = StyleEncoder(StyleEncoderConfig(
        family="sd15", architecture=architecture,
        backbone_config=backbone_config(architecture), heads={"clip_l": 768},
        preprocess=Preprocess(224, (0.5,) * 3, (0.5,) * 3)))
    save_style_encoder(encoder, models / "style_encoders" / "full-vit-l.safetensors")
    config = paths.write_extra_model_paths(work / "models.yaml", {
        kind: models / kind for kind in ("checkpoints", "style_encoders")})
    return config, "full-sd15.safetensors", "full-vit-l.safetensors"


def graphs(checkpoint: str, encoder: str, size: int, steps: int) -> tuple[dict, dict]:
    """Two graphs with the same nodes, differing only in the KSampler's positive input.

    ComfyUI's cache drops the outputs of nodes absent from the current prompt, so both graphs
    carry both encodes; alternating runs then re-run only sampling and decoding.
    """
    text = "a lighthouse, in the style of sks"
    nodes = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
        "2": {"class_type": "StyleSmithStyleEncoderLoader", "inputs": {"encoder_name": encoder}},
        "3": {"class_type": "LoadImage", "inputs": {"image": STYLE_REFERENCE}},
        "4": {"class_type": "StyleSmithImageToStyleTokens",
              "inputs": {"style_encoder": ["2", 0], "image": ["3", 0], "batch_mode": "per image"}},
        "5": {"class_type": "StyleSmithEncodePromptWithStyle",
              "inputs": {"clip": ["1", 1], "style_tokens": ["4", 0], "text": text, "placeholder": "sks"}},
        "10": {"class_type": "CLIPTextEncode", "inputs": {"text": text, "clip": ["1", 1]}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["1", 1]}},
        "7": {"class_type": "EmptyLatentImage", "inputs": {"width": size, "height": size, "batch_size": 1}},
        "8": {"class_type": "KSampler", "inputs": {"seed": 0, "steps": steps, "cfg": 7.5, "sampler_name": "euler",
              "scheduler": "normal", "denoise": 1.0, "model": ["1", 0], "positive": ["5", 0],
              "negative": ["6", 0], "latent_image": ["7", 0]}},
        "9": {"class_type": "VAEDecode", "inputs": {"samples": ["8", 0], "vae": ["1", 2]}},
    }
    plain = with_seed(nodes, 0)
    plain["8"]["inputs"]["positive"] = ["10", 0]
    return plain, with_seed(nodes, 0)


def with_seed(graph: dict, seed: int) -> dict:
    graph = {k: dict(v, inputs=dict(v["inputs"])) for k, v in graph.items()}
    graph["8"]["inputs"]["seed"] = seed
    return graph


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(args) -> None:
    with tempfile.TemporaryDirectory(prefix="stylesmith-bench-") as work:
        run_benchmark(args, Path(work))


def run_benchmark(args, work: Path) -> None:
    from comfy_adapter.host import import_comfy
    from devkit.in_process import InProcessHost
    base = paths.make_base_dir(work / "base")
    mm = import_comfy(base_directory=base, cpu=not args.gpu)
    config, checkpoint, encoder = prepare_models(work, args.full_size)
    host = InProcessHost(base, config, cpu=not args.gpu)
    plain, style = graphs(checkpoint, encoder, args.size, args.steps)
    host.run(with_seed(plain, 10_000), outputs_of=("9", "10"))
    rss_plain = peak_rss_mib()
    host.run(with_seed(style, 10_000), outputs_of=("9", "10"))
    rss_style = peak_rss_mib()
    times = {"plain": [], "style": []}
    for run in range(args.runs):
        for name, graph in (("plain", plain), ("style", style)):
            started = time.perf_counter()
            host.run(with_seed(graph, run), outputs_of=("9", "10"))
            times[name].append(time.perf_counter() - started)
    loaded = host.run(style, outputs_of=("2", "3"))
    images = loaded["3"][0].repeat(args.encoder_images, 1, 1, 1)
    to_tokens = host.node_classes["StyleSmithImageToStyleTokens"]
    to_tokens.execute(style_encoder=loaded["2"][0], image=images[:1], batch_mode="per image")
    started = time.perf_counter()
    to_tokens.execute(style_encoder=loaded["2"][0], image=images, batch_mode="per image")
    per_image = (time.perf_counter() - started) / args.encoder_images
    plain_s, style_s = statistics.median(times["plain"]), statistics.median(times["style"])
    device = mm.get_torch_device()
    print(f"device {device}; {'full-size SD1.5 + ViT-L/14' if args.full_size else 'tiny SD1.5 + tiny ViT'}; "
          f"{args.size} px, {args.steps} steps, {args.runs} runs each (median)")
    print(f"sampling+decode  plain {plain_s:.3f} s   style {style_s:.3f} s   style/plain {style_s / plain_s:.3f} (goal <= 1.02)")
    print(f"style encoder    {per_image * 1000:.1f} ms per image   ({per_image / plain_s:.3f} of one plain sampling run)")
    print(f"peak RSS         after plain {rss_plain:.0f} MiB   after style {rss_style:.0f} MiB   "
          f"ratio {rss_style / rss_plain:.3f}")
    if device.type == "cuda":
        print(f"peak GPU memory  {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")


if __name__ == "__main__":
    main(parse_args())
