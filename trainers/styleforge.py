"""StyleForge / Multi-StyleForge trainer (Park et al., arXiv 2404.05256): a dual-binding style LoRA.

Each component binds an identifier to a set of style references (StyleRef) with the instance prompt
"a photo of <identifier> <class>", while auxiliary images (Aux) hold the class prompt
"a photo of <class>" in place (DreamBooth's prior-preservation slot, filled by hand-picked images):

    L = sum_c  ||eps - eps_theta(z_t, t, c_inst)||^2 + lambda * ||eps' - eps_theta(z'_t, t, c_class)||^2

One component is StyleForge; several (e.g. characters and backgrounds, each with its own identifier,
StyleRef and Aux sets) trained jointly are Multi-StyleForge. The paper fine-tunes the whole UNet and
text encoder; we train a LoRA on the UNet's attention and feed-forward layers (and optionally the
text encoders) and write it with kohya keys and the identifiers in its metadata.

    python -m trainers.styleforge --checkpoint sd15.safetensors --styleref refs/ --aux aux/ --output-dir out/
    python -m trainers.styleforge --checkpoint sdxl.safetensors --output-dir out/ \\
        --component name=characters,identifier=zwx,class=style,styleref=chars/,aux=people/ \\
        --component name=backgrounds,identifier=qwv,class=style,styleref=bgs/,aux=places/
    torchrun --nproc-per-node 2 -m trainers.styleforge ...      # data parallel
"""
import argparse
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from core.image_folder import load_image_folder
from core.lora import LoRASet
from core.lora_file import Component, write_lora
from core.safe_files import file_sha256

from . import common
from .training_loop import TrainingLoop

UNET_TARGETS = r"transformer_blocks\.\d+\.(attn[12]\.(to_q|to_k|to_v|to_out\.0)|ff\.net\.(0\.proj|2))$"
TEXT_ENCODER_TARGETS = r"encoder\.layers\.\d+\.(self_attn\.(q_proj|k_proj|v_proj|out_proj)|mlp\.fc[12])$"
COMPONENT_KEYS = {"name", "identifier", "class", "styleref", "aux"}


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
    p.add_argument("--checkpoint", type=Path, required=True, help="your SD1.5 or SDXL .safetensors checkpoint")
    p.add_argument("--comfyui", type=Path, help="ComfyUI folder (default: $COMFYUI_PATH or the one this pack is in)")
    p.add_argument("--name", default="styleforge", help="file name of the LoRA (OUTPUT_DIR/NAME.safetensors)")
    d = p.add_argument_group("data (one component, or --component for several)")
    d.add_argument("--styleref", type=Path, help="folder of style reference images (about 15-20)")
    d.add_argument("--aux", type=Path, help="folder of auxiliary images for the prior term (about 15-20)")
    d.add_argument("--identifier", default="zwx", help="rare token bound to the style (default zwx)")
    d.add_argument("--class-word", default="style", help="class noun of the prompts (default style)")
    d.add_argument("--component", type=parse_component, action="append", default=[],
                   help="name=NAME,identifier=TOKEN,class=WORD,styleref=DIR,aux=DIR; repeat for Multi-StyleForge")
    d.add_argument("--resolution", type=int, default=512, help="training resolution in pixels (square crops)")
    t = p.add_argument_group("LoRA and loss")
    t.add_argument("--rank", type=int, default=16, help="LoRA rank")
    t.add_argument("--alpha", type=float, help="LoRA alpha (default: the rank, i.e. scale 1)")
    t.add_argument("--prior-weight", type=float, default=1.0, help="lambda of the Aux prior term (paper: 1.0)")
    t.add_argument("--batch-size", type=int, default=1, help="images per set per micro-step (paper: 1)")
    t.add_argument("--train-text-encoder", action="store_true", help="also put a LoRA on the text encoder(s)")
    t.add_argument("--text-encoder-lr", type=float, help="learning rate of the text-encoder LoRA (default: --lr)")
    t.add_argument("--save-dtype", choices=["fp16", "fp32"], default="fp16", help="dtype of the written LoRA")
    s = p.add_argument_group("preview samples")
    s.add_argument("--sample-prompt", action="append", default=[],
                   help="extra preview prompt; the component's trigger is appended (default: a city street)")
    s.add_argument("--sample-steps", type=int, default=20, help="sampler steps of the previews (0: none)")
    common.add_common_args(p, steps=1000, lr=1e-4, save_every=250)
    args = p.parse_args(argv)
    common.check_common_args(p, args)
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
    if args.rank < 1 or args.batch_size < 1 or args.prior_weight < 0 or args.sample_steps < 0:
        p.error("--rank and --batch-size must be at least 1, --prior-weight and --sample-steps at least 0")
    if args.resolution < 64 or args.resolution % 8:
        p.error(f"--resolution must be a multiple of 8, at least 64 (got {args.resolution})")
    args.alpha = float(args.rank) if args.alpha is None else args.alpha
    args.text_encoder_lr = args.text_encoder_lr or args.lr
    args.sample_prompt = args.sample_prompt or ["a photo of a city street at night"]
    return args


@dataclass
class ComponentData:
    component: Component
    styleref: torch.Tensor        # latents (N, C, h, w)
    aux: torch.Tensor

    @property
    def instance_prompt(self) -> str:
        return f"a photo of {self.component.trigger}"

    @property
    def class_prompt(self) -> str:
        return f"a photo of {self.component.class_word}"


class DualBindingLoss(nn.Module):
    """The trainable LoRAs, and the loss of one micro-step over every component."""

    def __init__(self, diffusion, loras: nn.ModuleDict, data: list[ComponentData], prior_weight: float,
                 batch_size: int):
        super().__init__()
        self.loras = loras
        self.diffusion = diffusion             # frozen, and no nn.Module: never among the trained parameters
        self.data, self.prior_weight, self.batch_size = data, prior_weight, batch_size
        self.train_text_encoder = "text_encoder" in loras
        self._prompt_cache = {}

    def condition(self, prompt: str):
        if self.train_text_encoder:
            return self.diffusion.encode_prompt(prompt)
        if prompt not in self._prompt_cache:
            with torch.no_grad():
                self._prompt_cache[prompt] = self.diffusion.encode_prompt(prompt)
        return self._prompt_cache[prompt]

    def forward(self, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        diffusion, total, parts = self.diffusion, 0.0, {}
        for d in self.data:
            picks = {"instance": (d.styleref, d.instance_prompt), "prior": (d.aux, d.class_prompt)}
            for kind, (latents, prompt) in picks.items():
                index = torch.randint(0, latents.shape[0], (self.batch_size,), generator=generator)
                loss = diffusion.epsilon_loss(latents[index], *self.condition(prompt), generator)
                total = total + (loss if kind == "instance" else self.prior_weight * loss)
                parts[f"{d.component.name} {kind}"] = loss.item()
        return total, parts


def build_loras(diffusion, args) -> nn.ModuleDict:
    loras = {"unet": LoRASet(diffusion.unet_module, UNET_TARGETS, args.rank, args.alpha)}
    if args.train_text_encoder:
        diffusion.allow_text_encoder_gradients()
        loras["text_encoder"] = LoRASet(diffusion.text_encoder_module, TEXT_ENCODER_TARGETS, args.rank, args.alpha)
    return nn.ModuleDict(loras).to(diffusion.device)


def lora_tensors(diffusion, loras: nn.ModuleDict, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    from comfy_adapter.kohya_names import text_encoder_names, unet_names
    name_maps = {"unet": unet_names(diffusion.unet, loras["unet"].names, diffusion.family)}
    if "text_encoder" in loras:
        name_maps["text_encoder"] = text_encoder_names(diffusion.text_encoder_module, loras["text_encoder"].names,
                                                       diffusion.family)
    tensors = {}
    for part, names in name_maps.items():
        for module, kohya in names.items():
            pair = loras[part].pair(module)
            tensors[f"{kohya}.lora_down.weight"] = pair.down.weight.detach().to(dtype)
            tensors[f"{kohya}.lora_up.weight"] = pair.up.weight.detach().to(dtype)
            tensors[f"{kohya}.alpha"] = torch.tensor(pair.alpha)
    return tensors


@dataclass
class TrainResult:
    diffusion: object
    loras: nn.ModuleDict
    lora_path: Path
    history: dict
    data: list


def load_components(diffusion, args) -> list[ComponentData]:
    data = []
    for spec in args.component:
        component = Component(spec["name"], spec["identifier"], spec["class_word"])
        styleref, _ = load_image_folder(spec["styleref"], args.resolution, f"StyleRef images of {component.name}")
        aux, _ = load_image_folder(spec["aux"], args.resolution, f"Aux images of {component.name}")
        data.append(ComponentData(component, diffusion.encode_images(styleref), diffusion.encode_images(aux)))
    return data


def preview_prompts(d: ComponentData, args) -> list[str]:
    return [d.instance_prompt] + [f"{p}, in {d.component.trigger}" for p in args.sample_prompt]


def write_previews(diffusion, data, args, step: int, base_rows: dict) -> None:
    if args.sample_steps == 0:
        return
    rows = dict(base_rows)
    for d in data:
        rows[f"{d.component.name} with LoRA, step {step}"] = diffusion.sample(
            preview_prompts(d, args), "blurry, low quality", min(args.resolution, 512), args.sample_steps, args.seed)
    common.save_image_grid(rows, args.output_dir / "samples.png")


def train(args) -> TrainResult:
    world = common.init_distributed(args.device)
    diffusion, precision = common.open_base_model(args, world)
    data = load_components(diffusion, args)
    common.print_run_summary("StyleForge" if len(data) == 1 else "Multi-StyleForge", args, {
        "checkpoint": f"{args.checkpoint.name} ({diffusion.family})",
        "components": ", ".join(f"{d.component.name}: '{d.instance_prompt}' {d.styleref.shape[0]} StyleRef / "
                                f"'{d.class_prompt}' {d.aux.shape[0]} Aux" for d in data),
        "precision": common.precision_summary(diffusion, precision)}, world)
    torch.manual_seed(args.seed)
    loras = build_loras(diffusion, args)
    groups = [{"params": loras["unet"].parameters(), "lr": args.lr}]
    if "text_encoder" in loras:
        groups.append({"params": loras["text_encoder"].parameters(), "lr": args.text_encoder_lr})
    loop = TrainingLoop(args, world, precision, torch.optim.AdamW(groups, weight_decay=1e-2), {"lora": loras})
    loss_module = DualBindingLoss(diffusion, loras, data, args.prior_weight, args.batch_size)
    base_rows = {}   # drawn whenever this run ends with pictures, so a resumed run's samples.png is whole too
    if world.is_main and args.sample_steps and loop.start < args.steps:
        base_rows = {f"{d.component.name} without LoRA": diffusion.sample(preview_prompts(d, args), "blurry, low quality",
                                                                          min(args.resolution, 512), args.sample_steps,
                                                                          args.seed) for d in data}
    for lora in loras.values():
        lora.attach()
    lora_path = args.output_dir / f"{args.name}.safetensors"
    save_dtype = torch.float16 if args.save_dtype == "fp16" else torch.float32
    checkpoint_hash = file_sha256(args.checkpoint) if world.is_main else ""

    def save_lora(step: int) -> None:
        write_lora(lora_tensors(diffusion, loras, save_dtype), lora_path, diffusion.family,
                   [d.component for d in data], args.checkpoint.name, checkpoint_hash,
                   args.rank, args.alpha, dict(loop.config, steps_done=step))
        common.plot_losses(loop.history, args.output_dir / "loss.png", f"{args.name}: loss per term")

    def step(i: int) -> dict[str, float]:
        generator = common.step_generator(args.seed, i, world.rank)
        return loop.accumulated_step(lambda: loss_module(generator))

    history = loop.run(args.steps, step, "StyleForge", save_lora)
    if world.is_main and loop.start < args.steps:
        write_previews(diffusion, data, args, args.steps, base_rows)
        pictures = [p for p in (args.output_dir / "loss.png", args.output_dir / "samples.png") if p.is_file()]
        print(f"LoRA: {lora_path}\npictures: {', '.join(map(str, pictures))}")
    world.barrier()
    world.close()
    return TrainResult(diffusion, loras, lora_path, history, data)


def main(args) -> None:
    train(args)


if __name__ == "__main__":
    main(parse_args())
