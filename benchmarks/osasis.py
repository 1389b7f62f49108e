"""Benchmark: OSASIS structural encode + decode against KSampler img2img with as many UNet evaluations,
and the OSASIS trainer's peak memory.

Sampling runs in this process on the real host (the nodes as ComfyUI runs them); UNet evaluations are
counted on both sides with a ComfyUI UNet function wrapper, and KSampler (euler, cfg 1, denoise t0) is
given that many steps (each timed run ends with a CUDA synchronise). The trainer runs one iteration in a fresh
process under benchmarks.trainer_probe, which reports that process's own peak RSS (VmHWM, not the parent's) and
peak CUDA memory; a reverse step is the peak, so one iteration shows it.

    python -m benchmarks.osasis                  # tiny SD1.5, 64 px
    python -m benchmarks.osasis --full-size      # full SD1.5 architecture, random weights, 512 px
    python -m benchmarks.osasis --full-size --skip-sampling --precision bf16     # trainer memory only
"""
import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from devkit import paths
from devkit.example_inputs import CONTENT_IMAGE, content_image, style_reference

from .trainer_probe import gib, read_report


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--full-size", action="store_true", help="full SD1.5 architecture (random weights)")
    p.add_argument("--resolution", type=int, help="pixels (default 64, or 512 with --full-size)")
    p.add_argument("--steps", type=int, default=50, help="schedule steps of the structural code")
    p.add_argument("--t0", type=float, default=0.5, help="inversion depth")
    p.add_argument("--iterations", type=int, default=3, help="fixed-point iterations per inversion step")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per side (median; after one warm-up)")
    p.add_argument("--skip-trainer", action="store_true", help="sampling comparison only")
    p.add_argument("--skip-sampling", action="store_true", help="trainer memory only")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="the trainer's autocast precision")
    p.add_argument("--gpu", action="store_true", help="sample and train on the GPU")
    args = p.parse_args(argv)
    args.resolution = args.resolution or (512 if args.full_size else 64)
    return args


class EvaluationCounter:
    """A ComfyUI UNet function wrapper that counts the model's forward passes."""

    def __init__(self):
        self.count = 0

    def __call__(self, apply_model, options):
        self.count += options["input"].shape[0]
        return apply_model(options["input"], options["timestep"], **options["c"])


def timed(run, repeats: int) -> float:
    run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        if torch.cuda.is_initialized():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def sampling_comparison(args, checkpoint: Path, work: Path) -> dict:
    from devkit.in_process import InProcessHost
    base = paths.make_base_dir(work / "base")
    config = paths.write_extra_model_paths(work / "models.yaml", {"checkpoints": checkpoint.parent})
    host = InProcessHost(base, config, cpu=not args.gpu)
    content_image(args.resolution).save(base / "input" / CONTENT_IMAGE)
    out = host.run({
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint.name}},
        "2": {"class_type": "LoadImage", "inputs": {"image": CONTENT_IMAGE}},
        "3": {"class_type": "VAEEncode", "inputs": {"pixels": ["2", 0], "vae": ["1", 2]}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"text": "a house under a blue sky", "clip": ["1", 1]}},
    }, outputs_of=("1", "3", "4"))
    counter = EvaluationCounter()
    model = out["1"][0].clone()
    model.set_model_unet_function_wrapper(counter)
    latent, cond = out["3"][0], out["4"][0]
    classes = host.node_classes
    encode, decode = classes["StyleSmithOsasisStructuralEncode"], classes["StyleSmithOsasisDecode"]
    ksampler = classes["KSampler"]()

    def osasis():
        structure = encode.execute(model=model, latent=latent, z_content=cond, t0=args.t0, steps=args.steps,
                                   scheduler="normal", inversion_iterations=args.iterations).result[0]
        return decode.execute(model=model, structure=structure, z_content=cond, mix=0.0, spn_weight=0.1,
                              lora_strength=1.0).result[0]

    with torch.inference_mode():
        counter.count = 0
        osasis()
        osasis_evals = counter.count

        def img2img():
            return ksampler.sample(model, 0, osasis_evals, 1.0, "euler", "normal", cond, cond, latent, denoise=args.t0)

        counter.count = 0
        img2img()
        img2img_evals = counter.count
        return {"osasis_s": timed(osasis, args.repeats), "img2img_s": timed(img2img, args.repeats),
                "osasis_evals": osasis_evals, "img2img_evals": img2img_evals,
                "device": str(host_device())}


def trainer_memory(args, checkpoint: Path, work: Path) -> dict:
    """One trainer iteration in a fresh process under benchmarks.trainer_probe: that process's own peak memory."""
    from devkit.tiny_style_encoders import build_style_encoder_file
    style_reference(args.resolution).save(work / "style.png")
    (work / "content").mkdir()
    content_image(args.resolution).save(work / "content" / "0.png")
    build_style_encoder_file(work / "encoder.safetensors", "sd15", 0,
                             **({"architecture": "ViT-B-32"} if args.full_size else {}))
    report = work / "trainer-probe.json"
    command = [sys.executable, "-m", "benchmarks.trainer_probe", "--report", str(report), "trainers.osasis.train",
               "--checkpoint", str(checkpoint), "--style", str(work / "style.png"), "--content", str(work / "content"),
               "--style-encoder", str(work / "encoder.safetensors"), "--output-dir", str(work / "trainer"),
               "--resolution", str(args.resolution), "--ddim-steps", "4", "--steps", "1", "--sampler-steps", "1",
               "--sdedit-candidates", "1", "--no-resume", "--precision", args.precision,
               "--device", "cuda" if args.gpu else "cpu"]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=paths.REPO_ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"trainer failed:\n{done.stderr[-3000:]}")
    return dict(read_report(report), seconds=time.perf_counter() - started)


def host_device():
    """The device ComfyUI samples on (the in-process host has configured it by now)."""
    from comfy_adapter.host import import_comfy
    return import_comfy().get_torch_device()


def main(args) -> None:
    with tempfile.TemporaryDirectory(prefix="stylesmith-bench-") as work:
        work = Path(work)
        checkpoint = paths.models_dir() / "checkpoints" / "stylesmith-tiny-sd15.safetensors"
        if args.full_size:   # built in its own process: this one configures ComfyUI with its own base directory
            checkpoint = work / "checkpoints" / "full-sd15.safetensors"
            subprocess.run([sys.executable, "-m", "devkit.tiny_models", "--family", "sd15", "--size", "full", "--out",
                            str(checkpoint), "--text-encoder-dtype", "fp16"], cwd=paths.REPO_ROOT, check=True)
        sampling = None if args.skip_sampling else sampling_comparison(args, checkpoint, work)
        memory = None if args.skip_trainer else trainer_memory(args, checkpoint, work)
    size = "full-size" if args.full_size else "tiny"
    devices = {"sampling": sampling and sampling["device"], "trainer": memory and memory["device"]}
    print("device: " + ", ".join(f"{part} on {device}" for part, device in devices.items() if device))
    print(f"{size} SD1.5, {args.resolution} px")
    if sampling:
        print(f"  t0={args.t0}, {args.steps} steps, {args.iterations} inversion iterations; median of {args.repeats}")
        print(f"  OSASIS encode+decode  {sampling['osasis_s']:8.3f} s   {sampling['osasis_evals']} UNet evaluations")
        print(f"  KSampler img2img      {sampling['img2img_s']:8.3f} s   {sampling['img2img_evals']} UNet evaluations")
        print(f"  OSASIS / img2img time at equal evaluations: {sampling['osasis_s'] / sampling['img2img_s']:.3f} "
              "(goal <= 1.10)")
    if memory:
        print(f"  trainer ({args.precision}), one iteration at {args.resolution} px, its own process: peak RSS "
              f"{gib(memory['peak_rss_gib'])} GiB, peak GPU {gib(memory['peak_gpu_gib'])} GiB, "
              f"{memory['seconds']:.1f} s in all")


if __name__ == "__main__":
    main(parse_args())
