"""Score the style methods side by side on the same prompts: text alignment, style similarity, content
preservation, FID/KID; writes scores.csv, summary.csv, summary.md, report.html and grid.png.

Either score images you already have (a folder with manifest.jsonl), or generate them first from a
comparison spec in a running ComfyUI with StyleSmith installed (style tokens, StyleForge, OSASIS, and
IP-Adapter when the IPAdapter+ nodes are installed), every method with the same seeds:

    python -m evaluation.evaluate --outputs my_outputs/ --report-dir report/ --style-encoder enc.safetensors
    python -m evaluation.evaluate --spec comparison.json --comfyui-url http://127.0.0.1:8188 --report-dir report/ [--csd csd.pth]

Weights: --clip (open_clip ARCH:TAG or ARCH:FILE, or a models/clip_vision file), --csd, --style-encoder,
--lpips-trunk, --inception. A metric whose weights are missing is reported and its columns left out.
--random-init gives random weights to CLIP, LPIPS and Inception where no file is given: for tests only,
the numbers then mean nothing. Formats and columns: docs/evaluation.md.
"""
import argparse
import sys
from pathlib import Path

import torch

from core.evaluation.manifest import ManifestError, read_manifest
from core.evaluation.report import markdown_table, summarise, write_report
from core.evaluation.scoring import Metrics, score_images, score_sets
from core.evaluation.weights import Availability, MetricUnavailable
from core.data.image_folder import IMAGE_SUFFIXES, DatasetError
from core.evaluation.metric_clip import load_clip
from core.evaluation.metric_csd import load_csd
from core.evaluation.metric_inception import FEATURE_SIZES, default_weights_file, load_inception
from core.evaluation.metric_lpips import TRUNK_FILES, default_trunk_file, load_lpips
from core.formats.safe_files import WeightFileError
from core.formats.style_encoder_file import load_style_encoder
from comfy_adapter.host import find_comfyui

from .comfy_client import ComfyClient, ComfyUIError
from .comparison_run import GenerationError, generate

DEFAULT_CLIP = "ViT-L-14:openai"
RANDOM_NOTE = ("RANDOM WEIGHTS (--random-init): CLIP, LPIPS and Inception without a weights file are randomly "
               "initialised, so these numbers say nothing about quality.")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--outputs", type=Path, help="a folder with manifest.jsonl (or the manifest file) of images to score")
    source.add_argument("--spec", type=Path, help="a comparison spec (JSON): generate every method in ComfyUI, then score")
    p.add_argument("--comfyui-url", help="with --spec: the address of a running ComfyUI with StyleSmith installed "
                                         "(e.g. http://127.0.0.1:8188), which generates the images")
    p.add_argument("--report-dir", type=Path, required=True, help="where the report goes (created)")
    p.add_argument("--clip", default=DEFAULT_CLIP,
                   help="CLIP for CLIP-T and the image cosines: open_clip ARCH:TAG (default %(default)s), ARCH:FILE, "
                        "or a models/clip_vision file (image cosines only)")
    p.add_argument("--csd", type=Path, help="CSD style-descriptor checkpoint (CSD ViT-L checkpoint.pth or .safetensors)")
    p.add_argument("--style-encoder", help="a StyleSmith style encoder (path or name in models/style_encoders) for "
                                           "style-token cosine; with --spec, default: the spec's")
    p.add_argument("--lpips-net", choices=sorted(TRUNK_FILES), default="alex", help="LPIPS trunk network")
    p.add_argument("--lpips-trunk", type=Path, help="torchvision state dict of that trunk "
                                                    "(default: torchvision's cache, $TORCH_HOME/hub/checkpoints)")
    p.add_argument("--inception", type=Path, help=f"FID Inception weights (default: torch hub cache {default_weights_file().name})")
    p.add_argument("--fid-features", type=int, choices=FEATURE_SIZES, default=2048,
                   help="Inception tap for FID/KID: 2048 is the standard (and comparable) one; smaller ones are "
                        "cheaper on a CPU but not comparable with published FIDs")
    p.add_argument("--no-fid", action="store_true", help="skip FID and KID")
    p.add_argument("--fid-real", type=Path, help="folder of real images for FID/KID (default: the reference images)")
    p.add_argument("--random-init", action="store_true",
                   help="random weights for CLIP, LPIPS and Inception where no file is given (tests; numbers mean nothing)")
    p.add_argument("--device", default="auto", help="torch device for the metric models (auto: cuda when available)")
    p.add_argument("--models-dir", type=Path, help="a ComfyUI models folder, where --style-encoder and --clip names "
                                                   "are looked up (default: models/ of the ComfyUI this pack is "
                                                   "installed in, or of $COMFYUI_PATH's)")
    p.add_argument("--extra-model-paths", type=Path, help="a ComfyUI extra_model_paths.yaml: more folders for those names")
    args = p.parse_args(argv)
    if args.spec is not None and not args.comfyui_url:
        p.error("--spec needs --comfyui-url: start ComfyUI with StyleSmith installed and pass its address, "
                "e.g. --comfyui-url http://127.0.0.1:8188")
    if args.outputs is not None and args.comfyui_url:
        p.error("--comfyui-url is for --spec; --outputs scores images that already exist")
    if args.fid_real is not None and not args.fid_real.is_dir():
        p.error(f"--fid-real {args.fid_real} is not a folder of images")
    if args.no_fid and (args.inception or args.fid_real):
        p.error("--no-fid contradicts --inception / --fid-real")
    return args


def model_file(kind: str, name: str, args) -> Path:
    """A file named as a ComfyUI loader lists it: a path, else `name` in models/<kind> of --models-dir (default: the
    models folder of the ComfyUI that comfy_adapter.host finds, if any), else in the folders --extra-model-paths adds
    for <kind> (ComfyUI's extra_model_paths.yaml format). A name found nowhere comes back as the first candidate,
    so that its loader says which file is missing."""
    if Path(name).is_file():
        return Path(name)
    comfyui = find_comfyui()
    models_dir = args.models_dir or (comfyui / "models" if comfyui else None)
    folders = [models_dir / kind] if models_dir else []
    if args.extra_model_paths is not None:
        import yaml
        for section in (yaml.safe_load(args.extra_model_paths.read_text()) or {}).values():
            base = Path(section.get("base_path", "")) if isinstance(section, dict) else Path()
            value = section.get(kind) if isinstance(section, dict) else None
            folders += [base / line.strip() for line in str(value or "").splitlines() if line.strip()]
    candidates = [folder / name for folder in folders] or [Path(name)]
    return next((path for path in candidates if path.is_file()), candidates[0])


def _try(availability: list, metric: str, load, describe, fix: str = ""):
    """Load one metric model; on failure record why (and the fix) and return None, so its columns are skipped.
    `describe(model)` says what was loaded."""
    try:
        model = load()
    except (MetricUnavailable, WeightFileError) as e:
        availability.append(Availability(metric, "missing", f"{e}. {fix}".strip()))
        return None
    availability.append(Availability(metric, "on", describe(model)))
    return model


def load_metrics(args, style_encoder: str | None, device: torch.device) -> tuple[Metrics, list[Availability]]:
    availability = []
    clip = _try(availability, "CLIP (clip_t, style_clip, content_clip)",
                lambda: load_clip(args.clip, args.random_init, model_file("clip_vision", args.clip, args).parent),
                lambda m: m.name + ("" if m.has_text else "; no text tower, so no clip_t"))
    csd = None
    if args.csd is None:
        availability.append(Availability("CSD (style_csd)", "off", "no --csd checkpoint given"))
    else:
        csd = _try(availability, "CSD (style_csd)", lambda: load_csd(args.csd), lambda m: str(args.csd))
    encoder = None
    if style_encoder is None:
        availability.append(Availability("style encoder (style_tokens)", "off", "no --style-encoder given"))
    else:
        path = model_file("style_encoders", style_encoder, args)
        encoder = _try(availability, "style encoder (style_tokens)", lambda: load_style_encoder(path), lambda m: str(path),
                       "Pass --style-encoder with a file, or --models-dir with the ComfyUI models folder whose "
                       "style_encoders/ holds it.")
    random_trunk = args.random_init and args.lpips_trunk is None
    trunk = "random trunk" if random_trunk else str(args.lpips_trunk or default_trunk_file(args.lpips_net))
    lpips = _try(availability, "LPIPS (content_lpips)", lambda: load_lpips(args.lpips_net, args.lpips_trunk, random_trunk),
                 lambda m: f"{args.lpips_net}, {trunk}", f"Pass --lpips-trunk with torchvision's {TRUNK_FILES[args.lpips_net]}.")
    inception = None
    if args.no_fid:
        availability.append(Availability("Inception (fid, kid)", "off", "--no-fid"))
    else:
        random_inception = args.random_init and args.inception is None
        source = "random weights" if random_inception else str(args.inception or default_weights_file())
        source += f", {args.fid_features} features"
        inception = _try(availability, "Inception (fid, kid)",
                         lambda: load_inception(args.inception, random_inception, args.fid_features),
                         lambda m: source, f"Pass --inception with torch-fidelity's {default_weights_file().name}.")
    for model in (clip and (clip.model or clip.visual), csd, encoder, lpips and lpips.metric, inception and inception.net):
        if model is not None:
            model.to(device)
    return Metrics(clip=clip, csd=csd, style_encoder=encoder, lpips=lpips, inception=inception, device=device), availability


def real_set(args, rows) -> list[Path]:
    if args.fid_real is None:
        return list(dict.fromkeys(r.reference for r in rows))
    images = sorted(p for p in args.fid_real.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise ManifestError(f"--fid-real {args.fid_real} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}).")
    return images


def generate_from_spec(args):
    from core.evaluation.comparison_spec import read_spec
    spec = read_spec(args.spec)
    rows, skipped = generate(spec, ComfyClient(args.comfyui_url), args.report_dir / "generated")
    encoders = [c.models["style_encoder"] for c in spec.cases if c.models.get("style_encoder")]
    return rows, skipped, encoders[0] if encoders else None


def main(args) -> dict[str, Path]:
    args.report_dir.mkdir(parents=True, exist_ok=True)
    notes, style_encoder = [], args.style_encoder
    if args.spec is not None:
        rows, skipped, spec_encoder = generate_from_spec(args)
        notes += skipped
        style_encoder = style_encoder or spec_encoder
    else:
        rows = read_manifest(args.outputs)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    metrics, availability = load_metrics(args, style_encoder, device)
    for a in availability:
        print(f"{a.metric}: {a.status} ({a.detail})")
    scores = score_images(rows, metrics)
    sets = {}
    if metrics.inception is not None:
        real = real_set(args, rows)
        if len(real) < 2:
            notes.append(f"FID/KID need at least 2 real images and the real set has {len(real)}: pass --fid-real "
                         "with a folder of the style's images.")
        sets = score_sets(rows, metrics.inception, real, device)
    if args.random_init:
        notes.insert(0, RANDOM_NOTE)
    files = write_report(rows, scores, metrics.columns(), sets, availability, args.report_dir, notes)
    print(markdown_table(summarise(rows, scores, metrics.columns(), sets), metrics.columns()))
    for kind, path in files.items():
        print(f"{kind}: {path}")
    return files


if __name__ == "__main__":
    try:
        main(parse_args())
    except (ManifestError, WeightFileError, DatasetError, GenerationError, ComfyUIError) as e:
        sys.exit(f"error: {e}")
