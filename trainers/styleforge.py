"""StyleForge / Multi-StyleForge trainer (Park et al., arXiv 2404.05256): a dual-binding style LoRA.

Each component binds an identifier to a set of style references (StyleRef) with the instance prompt
"a photo of <identifier> <class>", while auxiliary images (Aux) hold the class prompt
"a photo of <class>" in place (DreamBooth's prior-preservation slot, filled by hand-picked images):

    L = sum_c [ mean_i ||eps_i - eps_theta(z_i, t_i, c_inst,i)||^2
                + lambda * mean_j ||eps'_j - eps_theta(z'_j, t_j, c_class,j)||^2 ]

with means over the items of a batch (c_inst,i: the instance prompt with item i's caption, if any; see "Data").

One component is StyleForge; several (e.g. characters and backgrounds, each with its own identifier,
StyleRef and Aux sets) trained jointly are Multi-StyleForge.

What is trained: the paper fine-tunes the whole UNet and text encoder; we train a LoRA on kohya's targets,
so the file is what LoRA users expect: every Linear and 1x1 Conv2d of the UNet's transformers (attention
q/k/v/out, feed-forward, proj_in/proj_out) and the text encoders' attention and MLP layers (on by default,
at --text-encoder-lr, half of --lr unless given; --no-train-text-encoder freezes them). kohya keys, the
identifiers in the metadata (docs/formats.md).

Data (core/data/kohya_dataset.py): a set folder holds images, and optionally kohya repeat folders `N_name` whose
images count N times per epoch, and `.txt` captions of the same stem. The prompt of an image:
  - StyleRef without caption: "a photo of zwx style"; with one: "a photo of zwx style, <caption>", or the
    caption alone if it already names the identifier (kohya-style captions such as "zwx style, a girl");
  - Aux without caption: "a photo of style"; with one: "a photo of style, <caption>". An Aux caption that
    names the identifier is refused: it would bind the style to the Aux images.
Images are trained whole in aspect-ratio buckets of about --resolution² pixels (core/data/aspect_buckets.py;
default 1024 for SDXL, 512 for SD1.x), optionally mirrored (--flip); each batch is one bucket. A DataLoader
with --workers processes decodes each step's images, which are VAE-encoded per batch.

Randomness (core/data/step_batches.py) is a function of (seed, step, item position): a killed run resumes
bit-identically, and N ranks with --batch-size B train what one rank with batch N*B trains.

    python -m trainers.styleforge --checkpoint sd15.safetensors --styleref refs/ --aux aux/ --output-dir out/
    python -m trainers.styleforge --checkpoint sdxl.safetensors --output-dir out/ \\
        --component name=characters,identifier=zwx,class=style,styleref=chars/,aux=people/ \\
        --component name=backgrounds,identifier=qwv,class=style,styleref=bgs/,aux=places/
    torchrun --nproc-per-node 2 -m trainers.styleforge ...      # data parallel
"""
import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from core.data.image_folder import DatasetError
from core.data.kohya_dataset import ImageItem, ImageSets, read_training_folder
from core.lora.adapters import LoRASet
from core.formats.lora_file import Component, write_lora
from core.formats.safe_files import file_sha256
from core.data.step_batches import StepPlan, StepSampler

from comfy_adapter.batch_conditioning import join_conditionings

from . import cli, common
from .training_loop import TrainingLoop

UNET_TARGETS = r"transformer_blocks\.\d+\.(attn[12]\.(to_q|to_k|to_v|to_out\.0)|ff\.net\.(0\.proj|2))$"
KOHYA_UNET_TARGETS = UNET_TARGETS + r"|(^|\.)proj_(in|out)$"     # + the transformers' projections, as kohya
TEXT_ENCODER_TARGETS = r"encoder\.layers\.\d+\.(self_attn\.(q_proj|k_proj|v_proj|out_proj)|mlp\.fc[12])$"
COMPONENT_KEYS = {"name", "identifier", "class", "styleref", "aux"}
DEFAULT_RESOLUTION = {"sd15": 512, "sdxl": 1024}
NEGATIVE_PREVIEW_PROMPT = "blurry, low quality"


def parse_component(spec: str) -> dict:
    fields = dict(part.split("=", 1) for part in spec.split(",") if "=" in part)
    missing = sorted(COMPONENT_KEYS - {"class"} - set(fields))
    unknown = sorted(set(fields) - COMPONENT_KEYS)
    if missing or unknown:
        raise argparse.ArgumentTypeError(
            f"--component {spec!r}: missing {missing}, unknown {unknown}; "
            "write name=NAME,identifier=TOKEN,class=WORD,styleref=DIR,aux=DIR")
    return {"name": fields["name"], "identifier": fields["identifier"], "class_word": fields.get("class", "style"),
            "styleref": Path(fields["styleref"]), "aux": Path(fields["aux"])}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_base_model_args(p)
    p.add_argument("--name", default="styleforge", help="file name of the LoRA (OUTPUT_DIR/NAME.safetensors)")
    d = p.add_argument_group("data (one component, or --component for several)")
    d.add_argument("--styleref", type=Path, help="folder of style reference images (about 15-20); may hold N_name "
                                                 "repeat folders and .txt captions")
    d.add_argument("--aux", type=Path, help="folder of auxiliary images for the prior term (about 15-20); same layout")
    d.add_argument("--identifier", default="zwx", help="rare token bound to the style (default zwx)")
    d.add_argument("--class-word", default="style", help="class noun of the prompts (default style)")
    d.add_argument("--component", type=parse_component, action="append", default=[],
                   help="name=NAME,identifier=TOKEN,class=WORD,styleref=DIR,aux=DIR; repeat for Multi-StyleForge")
    d.add_argument("--resolution", type=int, help="buckets hold about RESOLUTION² pixels (default: 1024 for SDXL, "
                                                  "512 for SD1.x)")
    d.add_argument("--flip", action="store_true", help="mirror each image left-right with probability 1/2")
    d.add_argument("--workers", type=int, default=2, help="DataLoader processes decoding images (0: in this one)")
    t = p.add_argument_group("LoRA and loss")
    t.add_argument("--rank", type=int, default=16, help="LoRA rank")
    t.add_argument("--alpha", type=float, help="LoRA alpha (default: the rank, i.e. scale 1)")
    t.add_argument("--prior-weight", type=float, default=1.0, help="lambda of the Aux prior term (paper: 1.0)")
    t.add_argument("--batch-size", type=int, default=1, help="images per set per rank and micro-step (paper: 1)")
    t.add_argument("--no-train-text-encoder", dest="train_text_encoder", action="store_false",
                   help="freeze the text encoder(s): UNet LoRA only")
    t.add_argument("--train-text-encoder", dest="train_text_encoder", action="store_true",
                   help="the default, kept for older command lines")
    t.add_argument("--text-encoder-lr", type=float, help="learning rate of the text-encoder LoRA (default: --lr / 2)")
    t.add_argument("--save-dtype", choices=["fp16", "fp32"], default="fp16", help="dtype of the written LoRA")
    p.set_defaults(train_text_encoder=True)
    s = p.add_argument_group("preview samples")
    s.add_argument("--sample-prompt", action="append", default=[],
                   help="extra preview prompt; the component's trigger is appended (default: a city street)")
    s.add_argument("--sample-steps", type=int, default=20, help="sampler steps of the previews (0: none)")
    common.add_common_args(p, steps=1000, lr=1e-4, save_every=250)
    args = p.parse_args(argv)
    common.check_common_args(p, args)
    common.check_base_model_args(p, args)
    if args.component and (args.styleref or args.aux):
        p.error("give either --styleref/--aux (one component) or --component (several), not both")
    if not args.component:
        if not (args.styleref and args.aux):
            p.error("--styleref and --aux are required (or use --component)")
        args.component = [{"name": "style", "identifier": args.identifier, "class_word": args.class_word,
                           "styleref": args.styleref, "aux": args.aux}]
    for key in ("name", "identifier"):
        values = [c[key] for c in args.component]
        if len(set(values)) != len(values):
            p.error(f"every --component needs its own {key}; got {values}")
    if args.rank < 1 or args.batch_size < 1 or args.prior_weight < 0 or args.sample_steps < 0 or args.workers < 0:
        p.error("--rank and --batch-size must be at least 1, --prior-weight, --sample-steps and --workers at least 0")
    if args.resolution is not None and (args.resolution < 64 or args.resolution % 8):
        p.error(f"--resolution must be a multiple of 8, at least 64 (got {args.resolution})")
    args.alpha = float(args.rank) if args.alpha is None else args.alpha
    args.text_encoder_lr = args.text_encoder_lr or args.lr / 2
    args.sample_prompt = args.sample_prompt or ["a photo of a city street at night"]
    return args


def names_word(text: str, word: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text, re.IGNORECASE) is not None


@dataclass
class ComponentData:
    component: Component
    styleref: list[ImageItem]
    aux: list[ImageItem]

    @property
    def instance_prompt(self) -> str:
        return f"a photo of {self.component.trigger}"

    @property
    def class_prompt(self) -> str:
        return f"a photo of {self.component.class_word}"

    def prompt(self, kind: str, caption: str) -> str:
        """The prompt of one image of the "instance" (StyleRef) or "prior" (Aux) set: see the module docstring."""
        base = self.instance_prompt if kind == "instance" else self.class_prompt
        if not caption:
            return base
        if kind == "instance" and names_word(caption, self.component.identifier):
            return caption
        return f"{base}, {caption}"


def load_components(args) -> list[ComponentData]:
    data = []
    for spec in args.component:
        component = Component(spec["name"], spec["identifier"], spec["class_word"])
        styleref = read_training_folder(spec["styleref"], args.resolution, f"StyleRef images of {component.name}")
        aux = read_training_folder(spec["aux"], args.resolution, f"Aux images of {component.name}")
        for item in aux:
            if names_word(item.caption, component.identifier):
                raise DatasetError(f"The caption of Aux image {item.path} names the identifier "
                                   f"{component.identifier!r}; Aux images hold the class prompt, so remove it from "
                                   f"{item.path.with_suffix('.txt')}.")
        data.append(ComponentData(component, styleref, aux))
    return data


@dataclass
class SetBatch:
    """One rank's images of one set for one micro-step."""
    latents: torch.Tensor
    captions: list[str]
    generators: list[torch.Generator]      # each item's noise and timestep


def stack_conditions(encoded: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """One (cond, pooled) row per item. Prompts past 77 tokens make longer conds, joined as ComfyUI batches them
    (comfy_adapter.batch_conditioning.join_conditionings)."""
    return join_conditionings([cond for cond, _ in encoded]), torch.cat([pooled for _, pooled in encoded])


class DualBindingLoss(nn.Module):
    """The trainable LoRAs, and the loss of one micro-step over every component: per set the mean over its items."""

    def __init__(self, diffusion, loras: nn.ModuleDict, data: list[ComponentData], prior_weight: float):
        super().__init__()
        self.loras = loras
        self.diffusion = diffusion             # frozen, and no nn.Module: never among the trained parameters
        self.data, self.prior_weight = data, prior_weight
        self.train_text_encoder = "text_encoder" in loras
        self._prompt_cache = {}

    def condition(self, prompt: str):
        if self.train_text_encoder:
            return self.diffusion.encode_prompt(prompt)
        if prompt not in self._prompt_cache:
            with torch.no_grad():
                self._prompt_cache[prompt] = self.diffusion.encode_prompt(prompt)
        return self._prompt_cache[prompt]

    def conditions(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        encoded = {prompt: self.condition(prompt) for prompt in dict.fromkeys(prompts)}
        return stack_conditions([encoded[prompt] for prompt in prompts])

    def forward(self, batches: dict[int, SetBatch]) -> tuple[torch.Tensor, dict[str, float]]:
        """`batches`: set index (2 * component + 0 for StyleRef, 1 for Aux) -> this micro-step's batch."""
        total, parts = 0.0, {}
        for c, d in enumerate(self.data):
            for kind, set_index, weight in (("instance", 2 * c, 1.0), ("prior", 2 * c + 1, self.prior_weight)):
                batch = batches[set_index]
                cond, pooled = self.conditions([d.prompt(kind, caption) for caption in batch.captions])
                loss = self.diffusion.diffusion_losses(batch.latents, cond, pooled, batch.generators).mean()
                total = total + weight * loss
                parts[f"{d.component.name} {kind}"] = loss.item()
        return total, parts


def build_loras(diffusion, args) -> nn.ModuleDict:
    unet = diffusion.unet_module
    # SD1.x's proj_in / proj_out are 1x1 convolutions; kohya adapts them
    loras = {"unet": LoRASet(unet, KOHYA_UNET_TARGETS, args.rank, args.alpha, pointwise_convs=True)}
    if args.train_text_encoder:
        diffusion.allow_text_encoder_gradients()
        loras["text_encoder"] = LoRASet(diffusion.text_encoder_module, TEXT_ENCODER_TARGETS, args.rank, args.alpha)
    return nn.ModuleDict(loras).to(diffusion.device)


def make_optimizer(loras: nn.ModuleDict, args) -> torch.optim.Optimizer:
    groups = [{"params": [p for part, lora in loras.items() if part != "text_encoder" for p in lora.parameters()],
               "lr": args.lr}]
    if "text_encoder" in loras:
        groups.append({"params": list(loras["text_encoder"].parameters()), "lr": args.text_encoder_lr})
    return torch.optim.AdamW(groups, weight_decay=1e-2)


def lora_tensors(diffusion, loras: nn.ModuleDict, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """kohya-keyed tensors of every LoRA set ("unet", "text_encoder"; either)."""
    from comfy_adapter.kohya_names import text_encoder_names, unet_names
    tensors = {}
    for part, lora_set in loras.items():
        if part == "text_encoder":
            names = text_encoder_names(diffusion.text_encoder_module, lora_set.names, diffusion.family)
        else:
            names = unet_names(diffusion.unet, lora_set.names, diffusion.family)
        for module, kohya in names.items():
            down, up = lora_set.file_weights(module)
            tensors[f"{kohya}.lora_down.weight"] = down.to(dtype)
            tensors[f"{kohya}.lora_up.weight"] = up.to(dtype)
            tensors[f"{kohya}.alpha"] = torch.tensor(lora_set.pair(module).alpha)
    return tensors


def image_sets(data: list[ComponentData]) -> list[list[ImageItem]]:
    """Set 2c is component c's StyleRef, set 2c + 1 its Aux."""
    return [items for d in data for items in (d.styleref, d.aux)]


def batch_stream(data: list[ComponentData], args, world, start: int):
    """(the step plan, an iterator over this rank's decoded samples of each step from `start` on)."""
    sets = image_sets(data)
    plan = StepPlan.build(sets, args.batch_size, world.world_size, world.rank, args.grad_accum, args.seed, args.flip)
    loader = torch.utils.data.DataLoader(ImageSets(sets), batch_sampler=StepSampler(plan, start, args.steps),
                                         num_workers=args.workers, collate_fn=list)
    return plan, iter(loader)


def micro_batches(diffusion, plan: StepPlan, step: int, samples: list) -> list[dict[int, SetBatch]]:
    """A step's decoded samples -> per micro-step, per set: latents (VAE-encoded here, per batch), captions,
    generators."""
    grouped: dict[tuple[int, int], list] = {}
    for sample in samples:
        grouped.setdefault((sample[0].micro, sample[0].set_index), []).append(sample)
    micros = [{} for _ in range(plan.grad_accum)]
    for (micro, set_index), members in grouped.items():
        requests, images, captions = zip(*members)
        micros[micro][set_index] = SetBatch(diffusion.encode_images(torch.stack(images)), list(captions),
                                            [plan.noise_generator(step, r) for r in requests])
    return micros


@dataclass
class TrainResult:
    diffusion: object
    loras: nn.ModuleDict
    lora_path: Path
    history: dict
    data: list


def run_facts(diffusion, data: list[ComponentData], precision, args) -> dict:
    def describe(items: list[ImageItem]) -> str:
        captioned = sum(bool(i.caption) for i in items)
        return f"{len(items)} images ({captioned} captioned, {sum(i.repeats for i in items)} per epoch)"
    buckets: dict[tuple[int, int], int] = {}
    for item in (i for items in image_sets(data) for i in items):
        buckets[item.bucket] = buckets.get(item.bucket, 0) + 1
    return {"base model": f"{common.base_model_file(args).name} ({diffusion.family})",
            "components": "; ".join(f"{d.component.name}: StyleRef '{d.instance_prompt}' {describe(d.styleref)}, "
                                    f"Aux '{d.class_prompt}' {describe(d.aux)}" for d in data),
            "buckets": ", ".join(f"{w}x{h}: {n}" for (w, h), n in sorted(buckets.items())),
            "text encoder": f"LoRA, lr {args.text_encoder_lr}" if args.train_text_encoder else "frozen",
            "precision": common.precision_summary(diffusion, precision)}


def preview_prompts(d: ComponentData, args) -> list[str]:
    return [d.instance_prompt] + [f"{p}, in {d.component.trigger}" for p in args.sample_prompt]


def preview_rows(diffusion, data, args, label: str) -> dict:
    return {f"{d.component.name} {label}": diffusion.sample(preview_prompts(d, args), NEGATIVE_PREVIEW_PROMPT,
                                                            min(args.resolution, 512), args.sample_steps, args.seed)
            for d in data}


def lora_writer(diffusion, loras, data, args, loop: TrainingLoop, lora_path: Path):
    """The trainer's on_save: the LoRA file and the loss plot."""
    save_dtype = torch.float16 if args.save_dtype == "fp16" else torch.float32
    checkpoint_hash = file_sha256(common.base_model_file(args)) if loop.world.is_main else ""

    def save_lora(step: int) -> None:
        write_lora(lora_tensors(diffusion, loras, save_dtype), lora_path, diffusion.family,
                   [d.component for d in data], common.base_model_file(args).name, checkpoint_hash,
                   args.rank, args.alpha, dict(loop.config, steps_done=step))
        common.plot_losses(loop.history, args.output_dir / "loss.png", f"{args.name}: loss per term")
    return save_lora


def train(args) -> TrainResult:
    world = common.init_distributed(args.device)
    diffusion, precision = common.open_base_model(args, world)
    args.resolution = args.resolution or DEFAULT_RESOLUTION[diffusion.family]   # before the run's config is recorded
    data = load_components(args)
    common.print_run_summary("StyleForge" if len(data) == 1 else "Multi-StyleForge", args,
                             run_facts(diffusion, data, precision, args), world)
    torch.manual_seed(args.seed)
    loras = build_loras(diffusion, args)
    loop = TrainingLoop(args, world, precision, make_optimizer(loras, args), {"lora": loras})
    loss_module = DualBindingLoss(diffusion, loras, data, args.prior_weight)
    pictures = world.is_main and args.sample_steps > 0 and loop.start < args.steps
    base_rows = preview_rows(diffusion, data, args, "without LoRA") if pictures else {}   # a resumed run's too
    for lora in loras.values():
        lora.attach()
    plan, batches = batch_stream(data, args, world, loop.start)
    lora_path = args.output_dir / f"{args.name}.safetensors"

    def step(i: int) -> dict[str, float]:
        micros = iter(micro_batches(diffusion, plan, i, next(batches)))
        return loop.accumulated_step(lambda: loss_module(next(micros)))

    history = loop.run(args.steps, step, "StyleForge", lora_writer(diffusion, loras, data, args, loop, lora_path))
    next(batches, None)   # every step's batch is taken: this ends the loader's workers
    if pictures:
        rows = {**base_rows, **preview_rows(diffusion, data, args, f"with LoRA, step {args.steps}")}
        common.save_image_grid(rows, args.output_dir / "samples.png")
    if world.is_main and loop.start < args.steps:
        written = [p for p in (args.output_dir / "loss.png", args.output_dir / "samples.png") if p.is_file()]
        print(f"LoRA: {lora_path}\npictures: {', '.join(map(str, written))}")
    world.barrier()
    world.close()
    return TrainResult(diffusion, loras, lora_path, history, data)


def main(args) -> None:
    train(args)


if __name__ == "__main__":
    sys.exit(cli.run(main, parse_args))
