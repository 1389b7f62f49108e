"""Benchmark: sampling with style tokens vs plain text, style-encoder time per image, peak memory.

Both graphs are a bundled style-tokens workflow run in one process on the real ComfyUI: as shipped (style encoder +
image -> tokens -> Prompt with Style Tokens -> sampler -> VAE decode), and with the prompt as a stock CLIPTextEncode
of the same text (devkit.workflow_ablations). Each graph carries both encodes and each timed run changes the seed,
so ComfyUI's cache keeps the encodes and only sampling and decoding re-run; plain and style runs alternate. Printed:
ratios measured in this run (issue 20's goal: style / plain <= 1.02).

    python -m benchmarks.style_tokens                                   # tiny SD1.5, 64 px, 4 steps
    python -m benchmarks.style_tokens --workflow style-tokens-klein     # tiny Flux.2 Klein (or -zimage, -sdxl)
    python -m benchmarks.style_tokens --full-size                       # full SD1.5 + ViT-L/14 encoder, 512 px
    python -m benchmarks.style_tokens --full-size --workflow style-tokens-klein --gpu
                                        # Klein 4B + Qwen3-4B at full size, random bf16 (benchmarks.gpu_check's files)
"""
import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch

from devkit import paths
from devkit.workflow_ablations import ABLATIONS
from devkit.workflows import api_workflows, workflow_family

from .gpu_check_graphs import on_files

STYLE_PROMPT, PLAIN_PROMPT = "StyleSmithEncodePromptWithStyle", "plain-prompt"
TINY_FOLDERS = ("checkpoints", "style_encoders", "diffusion_models", "text_encoders", "vae_approx")


def parse_args(argv=None):
    workflows = sorted(name for name in api_workflows() if name.startswith("style-tokens-")
                       and len(name.split("-")) == 3)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workflow", choices=workflows, default="style-tokens-sd15", help="the bundled workflow timed")
    p.add_argument("--full-size", action="store_true", help="the family's full-size architecture (random weights) "
                                                            "and a full-size style encoder")
    p.add_argument("--size", type=int, help="image size in pixels (default 64, or 512 SD1.5 / 1024 otherwise with "
                                            "--full-size)")
    p.add_argument("--steps", type=int, default=4, help="sampling steps per run")
    p.add_argument("--runs", type=int, default=5, help="timed runs per graph")
    p.add_argument("--encoder-images", type=int, default=8, help="images for the encoder-time measurement")
    p.add_argument("--gpu", action="store_true", help="let ComfyUI use the GPU (default: CPU)")
    args = p.parse_args(argv)
    args.family = workflow_family(args.workflow)
    args.size = args.size or ((512 if args.family == "sd15" else 1024) if args.full_size else 64)
    if args.runs < 1 or args.steps < 1:
        p.error("--runs and --steps must be at least 1")
    return args


def full_size_sd15(models: Path) -> dict:
    """A full SD1.5 checkpoint and a ViT-L/14 style encoder, random; {loader input: file name}."""
    from core.style_tokens.clip_backbones import backbone_config
    from core.data.image_preprocess import Preprocess
    from core.style_tokens.encoder import StyleEncoder, StyleEncoderConfig
    from core.formats.style_encoder_file import save_style_encoder
    from devkit.tiny_models import build_checkpoint
    build_checkpoint(models / "checkpoints" / "full-sd15.safetensors", "sd15", "full", text_encoder_dtype="fp16")
    architecture = "ViT-L-14-quickgelu"
    encoder = StyleEncoder(StyleEncoderConfig(
        family="sd15", architecture=architecture,
        backbone_config=backbone_config(architecture), heads={"clip_l": 768},
        preprocess=Preprocess(224, (0.5,) * 3, (0.5,) * 3)))
    save_style_encoder(encoder, models / "style_encoders" / "full-vit-l.safetensors")
    return {"ckpt_name": "full-sd15.safetensors", "encoder_name": "full-vit-l.safetensors"}


def full_size_split(models: Path, family: str) -> dict:
    """The family's full-size split files and a ViT-B/32 style encoder with its head, as benchmarks.gpu_check builds
    them (kept in its work folder and reused); {loader input: file name}."""
    from .gpu_check import full_size_split_files, full_size_style_encoder
    work = paths.state_dir() / "gpu-check"
    diffusion, encoder, vae = full_size_split_files(work / "split", family)
    style = full_size_style_encoder(work / "style_encoders" / f"vit-b-32-{family}.safetensors", family)
    for path, folder in ((diffusion, "diffusion_models"), (encoder, "text_encoders"), (style, "style_encoders")):
        (models / folder).mkdir(parents=True, exist_ok=True)
        (models / folder / path.name).symlink_to(path)
    (models / "vae_approx").symlink_to(vae.parent, target_is_directory=True)
    return {"unet_name": diffusion.name, "clip_name": encoder.name, "encoder_name": style.name}


def prepare_models(work: Path, family: str, full_size: bool) -> tuple[Path, dict]:
    """An extra_model_paths.yaml and the file names the loaders take ({} keeps the workflow's tiny files)."""
    if not full_size:
        return paths.write_extra_model_paths(work / "models.yaml", {
            kind: paths.models_dir() / kind for kind in TINY_FOLDERS}), {}
    models = work / "models"
    names = full_size_sd15(models) if family == "sd15" else full_size_split(models, family)
    config = paths.write_extra_model_paths(work / "models.yaml", {
        kind: models / kind for kind in TINY_FOLDERS if (models / kind).exists()})
    return config, names


def graphs(workflow: str, files: dict, size: int, steps: int) -> tuple[dict, dict, str]:
    """The workflow with its sampler on the plain prompt and as shipped, and the id of the node whose IMAGE it saves.

    ComfyUI's cache drops the outputs of nodes absent from the current prompt, so both graphs carry both encodes;
    alternating runs then re-run only sampling and decoding.
    """
    nodes = on_files(api_workflows()[workflow], files, size)
    (save_id, save), = [(i, n) for i, n in nodes.items() if n["class_type"] == "SaveImage"]
    del nodes[save_id]
    (style_id, style_node), = [(i, n) for i, n in nodes.items() if n["class_type"] == STYLE_PROMPT]
    nodes[PLAIN_PROMPT] = ABLATIONS["style tokens"][1](style_node)
    for node in nodes.values():
        if "seed" in node["inputs"]:
            node["inputs"]["steps"] = steps
    plain = {node_id: dict(node, inputs={name: [PLAIN_PROMPT, 0] if value == [style_id, 0] else value
                                         for name, value in node["inputs"].items()})
             for node_id, node in nodes.items()}
    return plain, nodes, save["inputs"]["images"][0]


def with_seed(graph: dict, seed: int) -> dict:
    return {k: dict(v, inputs=dict(v["inputs"], seed=seed) if "seed" in v["inputs"] else v["inputs"])
            for k, v in graph.items()}


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
    config, files = prepare_models(work, args.family, args.full_size)
    host = InProcessHost(base, config, cpu=not args.gpu)
    plain, style, image = graphs(args.workflow, files, args.size, args.steps)
    (style_id,) = [i for i, n in style.items() if n["class_type"] == STYLE_PROMPT]
    encodes = (image, style_id, PLAIN_PROMPT)
    host.run(with_seed(plain, 10_000), outputs_of=encodes)
    rss_plain = peak_rss_mib()
    host.run(with_seed(style, 10_000), outputs_of=encodes)
    rss_style = peak_rss_mib()
    times = {"plain": [], "style": []}
    for run in range(args.runs):
        for name, graph in (("plain", plain), ("style", style)):
            started = time.perf_counter()
            host.run(with_seed(graph, run), outputs_of=encodes)
            times[name].append(time.perf_counter() - started)
    to_tokens_id, = [i for i, n in style.items() if n["class_type"] == "StyleSmithImageToStyleTokens"]
    encoder_id, image_id = (style[to_tokens_id]["inputs"][name][0] for name in ("style_encoder", "image"))
    loaded = host.run(style, outputs_of=(encoder_id, image_id))
    images = loaded[image_id][0].repeat(args.encoder_images, 1, 1, 1)
    to_tokens = host.node_classes["StyleSmithImageToStyleTokens"]
    to_tokens.execute(style_encoder=loaded[encoder_id][0], image=images[:1], batch_mode="per image")
    started = time.perf_counter()
    to_tokens.execute(style_encoder=loaded[encoder_id][0], image=images, batch_mode="per image")
    per_image = (time.perf_counter() - started) / args.encoder_images
    plain_s, style_s = statistics.median(times["plain"]), statistics.median(times["style"])
    device = mm.get_torch_device()
    print(f"device {device}; {args.workflow} on {'full-size' if args.full_size else 'tiny'} models; "
          f"{args.size} px, {args.steps} steps, {args.runs} runs each (median)")
    print(f"sampling+decode  plain {plain_s:.3f} s   style {style_s:.3f} s   style/plain {style_s / plain_s:.3f} "
          "(goal <= 1.02)")
    print(f"style encoder    {per_image * 1000:.1f} ms per image   ({per_image / plain_s:.3f} of one plain sampling run)")
    print(f"peak RSS         after plain {rss_plain:.0f} MiB   after style {rss_style:.0f} MiB   "
          f"ratio {rss_style / rss_plain:.3f}")
    if device.type == "cuda":
        print(f"peak GPU memory  {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")


if __name__ == "__main__":
    main(parse_args())
