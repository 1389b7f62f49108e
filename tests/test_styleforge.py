"""StyleForge: the dual-binding LoRA trainer and its file (the nodes: test_styleforge_nodes.py)."""
import json
import logging
import os
import signal
import subprocess
import sys

import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

from core.data.aspect_buckets import fit_to_bucket
from core.data.image_folder import DatasetError
from core.formats.lora_file import read_lora
from devkit.example_inputs import content_image, write_styleforge_sets
from devkit.paths import REPO_ROOT
from devkit.processes import file_size_limit, kill_when_written, signal_when_written
from trainers import common
from trainers.styleforge import load_components, parse_args, resolve_text_encoder_training, train

# 100 steps of the prior test give Aux-loss ratios of 0.72-0.75 over seeds 0-2 (20 steps are noise)
PRIOR_STEPS, PRIOR_MARGIN = 100, 0.85

# The lane (`hosts`) runs what meets the host: loading, ComfyUI's LoRA keys, training through its models (the
# `trained` run). A run's interruption, resume, full disk and ranks, and how far its loss falls, are the pack's own
# loop and optimiser, the same on every ComfyUI: pinned host only. So is what the prior term's weight does to the
# Aux loss over training (that the logged term is the Aux loss under the class prompt runs on every host).
pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning")]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread here and in the trainers started from here: on a small shared machine two threads contend
    with the other processes and each step takes about 8x as long."""
    threads, environment = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"
    yield
    torch.set_num_threads(threads)
    if environment is None:
        os.environ.pop("OMP_NUM_THREADS")
    else:
        os.environ["OMP_NUM_THREADS"] = environment


@pytest.fixture(scope="module")
def image_sets(tmp_path_factory):
    return write_styleforge_sets(tmp_path_factory.mktemp("styleforge-data"))


def argv(checkpoint, sets, out, *extra, steps=3, lr="5e-3"):
    return ["--checkpoint", str(checkpoint), "--styleref", str(sets["refs"]), "--aux", str(sets["aux"]),
            "--output-dir", str(out), "--resolution", "64", "--steps", str(steps), "--lr", lr,
            "--sample-steps", "0", "--save-dtype", "fp32", "--no-resume", *extra]


@pytest.fixture(scope="module")
def trained(tiny_checkpoint, image_sets, tmp_path_factory):
    out = tmp_path_factory.mktemp("styleforge-run")
    return train(parse_args(argv(tiny_checkpoint("sd15"), image_sets, out)))   # the text-encoder LoRA is on by default


def relative_l2(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.hosts
def test_written_file_has_kohya_keys_and_trigger_metadata(trained):
    tensors, info = read_lora(trained.lora_path)
    assert info.family == "sd15" and info.source == "stylesmith"
    assert [c.trigger for c in info.components] == ["zwx style"]
    assert any(k.startswith("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q") for k in tensors)
    assert any(k.startswith("lora_te_text_model_encoder_layers_0_self_attn_q_proj") for k in tensors)
    for projection in ("proj_in", "proj_out"):   # SD1.x: 1x1 convolutions, stored as kohya stores conv LoRAs
        assert tensors[f"lora_unet_down_blocks_0_attentions_0_{projection}.lora_down.weight"].shape == (16, 320, 1, 1)
    with safe_open(str(trained.lora_path), "pt") as f:
        meta = f.metadata()
    assert meta["modelspec.trigger_phrase"] == "zwx style"
    assert meta["ss_network_dim"] == "16" and meta["stylesmith.base_checkpoint"].startswith("stylesmith-tiny-sd15")
    assert len(meta["stylesmith.base_checkpoint_sha256"]) == 64
    for picture in ("loss.png", "run_summary.json", "checkpoint.pt"):
        assert (trained.lora_path.parent / picture).is_file()


@pytest.mark.hosts
def test_comfyui_loads_every_key_and_reproduces_the_trainers_model(trained, tiny_checkpoint, caplog):
    import comfy.model_management
    import comfy.sd
    diffusion, prompt = trained.diffusion, "a photo of zwx style"
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 8, 8, generator=generator)
    sigma = torch.tensor([3.0])
    with torch.no_grad():
        cond, pooled = diffusion.encode_prompt(prompt)
        in_memory = diffusion.unet.apply_model(x, sigma, **diffusion.model_inputs(cond, pooled, x))
        for lora in trained.loras.values():
            lora.detach()
        base_cond, base_pooled = diffusion.encode_prompt(prompt)
        base = diffusion.unet.apply_model(x, sigma, **diffusion.model_inputs(base_cond, base_pooled, x))
        for lora in trained.loras.values():
            lora.attach()
    model, clip, _, _ = comfy.sd.load_checkpoint_guess_config(str(tiny_checkpoint("sd15")), output_vae=False)
    tensors, _ = read_lora(trained.lora_path)
    with caplog.at_level(logging.WARNING):
        model, clip = comfy.sd.load_lora_for_models(model, clip, tensors, 1.0, 1.0)
    assert not [r for r in caplog.records if "lora key not loaded" in r.getMessage()]
    comfy.model_management.load_models_gpu([model, clip.patcher], force_full_load=True)
    with torch.no_grad():
        loaded_cond, loaded_pooled = clip.encode_from_tokens(clip.tokenize(prompt), return_pooled=True)
        conds = model.model.extra_conds(cross_attn=loaded_cond, pooled_output=loaded_pooled, noise=x, device=x.device)
        loaded = model.model.apply_model(x, sigma, **{k: v.cond for k, v in conds.items()})
    assert relative_l2(cond, base_cond) > 1e-4, "the text-encoder LoRA changes nothing: the test would be vacuous"
    assert relative_l2(in_memory, base) > 1e-4, "the LoRA changes nothing: the test would be vacuous"
    assert relative_l2(loaded_cond, cond) <= 1e-5
    assert relative_l2(loaded, in_memory) <= 1e-5


def encoded(result, items) -> torch.Tensor:
    """The latents of a set's images at their buckets (all one bucket here)."""
    pixels = [torch.from_numpy(fit_to_bucket(Image.open(item.path), item.bucket)) for item in items]
    return result.diffusion.encode_images(torch.stack(pixels))


def fixed_loss(result, items, prompt: str, seeds: int = 24) -> float:
    """Denoising loss of a set under a prompt on fixed noises and timesteps, so runs are comparable."""
    d = result.diffusion
    with torch.no_grad():
        cond, pooled = d.encode_prompt(prompt)
        latents = encoded(result, items)
        losses = [d.diffusion_loss(latent[None], cond, pooled, torch.Generator().manual_seed(seed))
                  for seed in range(seeds) for latent in latents]
    return float(torch.stack(losses).mean())


def test_training_loss_falls(tiny_checkpoint, image_sets, tmp_path):
    result = train(parse_args(argv(tiny_checkpoint("sd15"), image_sets, tmp_path, steps=30, lr="2e-2")))
    styleref = result.data[0].styleref
    after = fixed_loss(result, styleref, "a photo of zwx style")
    for lora in result.loras.values():
        lora.detach()
    before = fixed_loss(result, styleref, "a photo of zwx style")
    assert after < 0.9 * before, f"fixed-set instance loss {before:.4f} -> {after:.4f}"


def test_prior_term_binds_the_aux_images_to_the_class_prompt(tiny_checkpoint, image_sets, tmp_path):
    aux_loss = {}
    for weight in ("0", "1"):
        result = train(parse_args(argv(tiny_checkpoint("sd15"), image_sets, tmp_path / weight, "--prior-weight", weight,
                                       "--no-train-text-encoder", steps=PRIOR_STEPS)))
        aux_loss[weight] = fixed_loss(result, result.data[0].aux, "a photo of style")
        for lora in result.loras.values():
            lora.detach()
    assert aux_loss["1"] < PRIOR_MARGIN * aux_loss["0"], f"Aux loss under the class prompt: {aux_loss}"


@pytest.mark.hosts
def test_prior_term_is_the_aux_loss_under_the_class_prompt(tiny_checkpoint, image_sets, tmp_path):
    """The prior loss logged at step 1 (the LoRAs start as the identity) is the base model's loss on that step's Aux
    items under the class prompt "a photo of style", and the instance prompt would give another number."""
    from types import SimpleNamespace
    from trainers.styleforge import batch_stream, micro_batches
    args = parse_args(argv(tiny_checkpoint("sd15"), image_sets, tmp_path, "--workers", "0", steps=1))
    result = train(args)
    (step, logged), = result.history[f"{result.data[0].component.name} prior"]
    for lora in result.loras.values():
        lora.detach()
    d = result.diffusion

    def aux_loss(prompt: str) -> float:
        plan, batches = batch_stream(result.data, args, SimpleNamespace(world_size=1, rank=0), 0)
        aux = micro_batches(d, plan, 0, next(batches))[0][1]
        cond, pooled = d.encode_prompt(prompt)
        with torch.no_grad():
            return d.diffusion_losses(aux.latents, cond.expand(len(aux.captions), -1, -1),
                                    pooled.expand(len(aux.captions), -1), aux.generators).mean().item()

    class_loss, instance_loss = aux_loss("a photo of style"), aux_loss("a photo of zwx style")
    assert step == 1 and abs(logged - class_loss) <= 1e-5 * class_loss, (logged, class_loss)
    assert abs(instance_loss - class_loss) > 1e-4 * class_loss, "the two prompts must give different losses"


@pytest.mark.hosts
def test_multi_styleforge_writes_one_identifier_per_component(tiny_checkpoint, image_sets, tmp_path):
    components = [f"name=characters,identifier=zwx,class=style,styleref={image_sets['refs']},aux={image_sets['aux']}",
                  f"name=backgrounds,identifier=qwv,class=style,styleref={image_sets['refs2']},aux={image_sets['aux2']}"]
    args = parse_args(["--checkpoint", str(tiny_checkpoint("sd15")), "--output-dir", str(tmp_path), "--resolution", "64",
                       "--steps", "2", "--sample-steps", "1", "--no-resume",
                       *[x for c in components for x in ("--component", c)]])
    result = train(args)
    for lora in result.loras.values():
        lora.detach()
    _, info = read_lora(result.lora_path)
    assert [(c.name, c.trigger) for c in info.components] == [("characters", "zwx style"), ("backgrounds", "qwv style")]
    assert {"characters instance", "characters prior", "backgrounds instance", "backgrounds prior"} == set(result.history)
    assert (tmp_path / "samples.png").is_file() and (tmp_path / "loss.png").is_file()


@pytest.mark.sdxl
@pytest.mark.hosts
def test_sdxl_lora_covers_both_text_encoders(tiny_checkpoint, image_sets, tmp_path, caplog):
    import comfy.sd
    result = train(parse_args(argv(tiny_checkpoint("sdxl"), image_sets, tmp_path, steps=1)))
    for lora in result.loras.values():
        lora.detach()
    tensors, info = read_lora(result.lora_path)
    assert info.family == "sdxl"
    assert any(k.startswith("lora_te1_") for k in tensors) and any(k.startswith("lora_te2_") for k in tensors)
    assert any(k.startswith("lora_unet_input_blocks_") for k in tensors)
    assert any(k.endswith("proj_in.lora_down.weight") and tensors[k].ndim == 2 for k in tensors)   # Linear in SDXL
    model, clip, _, _ = comfy.sd.load_checkpoint_guess_config(str(tiny_checkpoint("sdxl")), output_vae=False)
    with caplog.at_level(logging.WARNING):
        comfy.sd.load_lora_for_models(model, clip, tensors, 1.0, 1.0)
    assert not [r for r in caplog.records if "lora key not loaded" in r.getMessage()]


@pytest.fixture(scope="module")
def uninterrupted_8_steps(tiny_checkpoint, image_sets, tmp_path_factory):
    """The LoRA of 8 steps in one go, which every interrupted and resumed run must end with."""
    result = train(parse_args(argv(tiny_checkpoint("sd15"), image_sets, tmp_path_factory.mktemp("straight"), steps=8)))
    for lora in result.loras.values():
        lora.detach()
    return read_lora(result.lora_path)[0]


def resume_to_8_steps(tiny_checkpoint, image_sets, out, *extra):
    resumed = train(parse_args(argv(tiny_checkpoint("sd15"), image_sets, out, steps=8)[:-1] + ["--save-every", "2",
                                                                                              *extra]))
    for lora in resumed.loras.values():
        lora.detach()
    return read_lora(resumed.lora_path)[0]


def assert_same_lora(a, b):
    assert a.keys() == b.keys()
    assert max((a[k].float() - b[k].float()).abs().max().item() for k in a) <= 1e-6


def test_sigterm_checkpoints_the_finished_step_and_resumes_bit_identically(tiny_checkpoint, image_sets,
                                                                          uninterrupted_8_steps, tmp_path):
    signum, stopped = signal.SIGTERM, tmp_path / "stopped"
    command = [sys.executable, "-m", "trainers.styleforge", *argv(tiny_checkpoint("sd15"), image_sets, stopped,
                                                                  steps=200)[:-1], "--save-every", "2"]
    status = signal_when_written(command, stopped / "checkpoint.pt", signum, tmp_path / "stderr.txt")
    err = (tmp_path / "stderr.txt").read_text()
    step = torch.load(stopped / "checkpoint.pt", weights_only=True)["step"]
    assert status == 128 + signum and 2 < step < 8, err
    assert f"stopped by {signal.Signals(signum).name} after step {step} of 200; the checkpoint of step {step} is in " \
           f"{stopped}. Run the same command again to resume from step {step}." in err and "Traceback" not in err
    assert not list(stopped.glob(".*partial")) and not (stopped / ".stylesmith-run.lock").exists()
    assert_same_lora(resume_to_8_steps(tiny_checkpoint, image_sets, stopped), uninterrupted_8_steps)


def test_a_full_disk_stops_with_the_file_and_the_space_needed(tiny_checkpoint, image_sets, tmp_path):
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "trainers.styleforge",
                           *argv(tiny_checkpoint("sd15"), image_sets, out, steps=2)], cwd=REPO_ROOT, text=True,
                          capture_output=True, preexec_fn=file_size_limit(1 << 20), timeout=600)
    lora = parse_args(argv(tiny_checkpoint("sd15"), image_sets, out)).name
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert f"error: Could not write the LoRA {out / lora}.safetensors: the file is larger than this process may " \
           "write (File too large)" in last and "The file-size limit (ulimit -f) is 1.0 MiB; it needs " in last, last
    assert "Traceback" not in done.stderr and not list(out.glob(".*partial")) and not (out / f"{lora}.safetensors").exists()


def test_kill_and_resume_ends_where_an_uninterrupted_run_ends(tiny_checkpoint, image_sets, uninterrupted_8_steps,
                                                               tmp_path, monkeypatch):
    interrupted = tmp_path / "interrupted"
    command = [sys.executable, "-m", "trainers.styleforge", *argv(tiny_checkpoint("sd15"), image_sets, interrupted,
                                                                  steps=200)[:-1], "--save-every", "2"]
    kill_when_written(command, interrupted / "checkpoint.pt")
    saved_step = torch.load(interrupted / "checkpoint.pt", weights_only=True)["step"]
    assert 2 <= saved_step < 8
    grids = []
    monkeypatch.setattr(common, "save_image_grid", lambda rows, path: grids.append(list(rows)))
    resumed = resume_to_8_steps(tiny_checkpoint, image_sets, interrupted, "--sample-steps", "1")
    assert grids == [["style without LoRA", "style with LoRA, step 8"]], "a resumed run's samples.png is whole"
    assert_same_lora(resumed, uninterrupted_8_steps)
    assert not list(interrupted.glob(".*partial"))


@pytest.mark.hosts
def test_bad_training_input_names_the_problem(tiny_checkpoint, image_sets, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    (empty / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="no usable image.*broken.png"):
        train(parse_args(["--checkpoint", str(tiny_checkpoint("sd15")), "--styleref", str(empty), "--aux",
                          str(image_sets["aux"]), "--output-dir", str(tmp_path / "o"), "--resolution", "64"]))
    with pytest.raises(SystemExit):
        parse_args(["--checkpoint", "x", "--output-dir", str(tmp_path), "--styleref", str(empty)])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        train(parse_args(argv(tmp_path / "missing.safetensors", image_sets, tmp_path / "o2")))


def test_defaults_text_encoder_lora_on_at_half_the_learning_rate(tmp_path):
    base = ["--checkpoint", "x.safetensors", "--styleref", "r", "--aux", "a", "--output-dir", str(tmp_path)]
    args = parse_args(base)
    assert args.train_text_encoder is None and args.text_encoder_lr == 5e-5 and args.lr == 1e-4   # by family:
    resolve_text_encoder_training(args, "sd15")
    assert args.train_text_encoder                                        # on for CLIP encoders
    assert args.resolution is None and args.workers == 2 and not args.flip   # resolution: 512 SD1.x, 1024 SDXL
    assert not parse_args(base + ["--no-train-text-encoder"]).train_text_encoder
    assert parse_args(base + ["--train-text-encoder"]).train_text_encoder          # older command lines
    assert parse_args(base + ["--lr", "1e-3", "--text-encoder-lr", "2e-4"]).text_encoder_lr == 2e-4


def test_captions_join_the_prompt_and_aux_captions_must_not_name_the_identifier(tmp_path):
    refs, aux = tmp_path / "refs" / "5_zwx style", tmp_path / "aux"
    for folder in (refs, aux):
        folder.mkdir(parents=True)
        content_image(64).save(folder / "a.png")
        content_image(64).save(folder / "b.png")
    (refs / "a.txt").write_text("a harbour at dusk")
    (refs / "b.txt").write_text("ZWX style, a girl")
    (aux / "a.txt").write_text("a portrait")
    args = parse_args(["--checkpoint", "x.safetensors", "--styleref", str(tmp_path / "refs"), "--aux", str(aux),
                       "--output-dir", str(tmp_path / "o"), "--resolution", "64"])
    d, = load_components(args)
    assert [d.prompt("instance", item.caption) for item in d.styleref] == [
        "a photo of zwx style, a harbour at dusk", "ZWX style, a girl"]
    assert [item.repeats for item in d.styleref] == [5, 5]
    assert [d.prompt("prior", item.caption) for item in d.aux] == ["a photo of style, a portrait", "a photo of style"]
    (aux / "b.txt").write_text("a zwx portrait")
    with pytest.raises(DatasetError, match=r"Aux image .*b.png names the identifier 'zwx'.* remove it from .*b.txt"):
        load_components(args)


# ---- nodes --------------------------------------------------------------------------------------
def test_two_ranks_with_batch_one_train_what_one_rank_with_batch_two_trains(tiny_checkpoint, image_sets, tmp_path):
    """The gradients the optimiser applies at each of steps 1-3, taken by benchmarks.trainer_probe: averaged over two
    ranks with one item each, they are those of one rank with both items (the same items, the same flips)."""
    steps = 3

    def gradients(out, ranks, batch_size):
        launch = ["-m", "torch.distributed.run", "--nproc-per-node", str(ranks)] if ranks > 1 else []
        done = subprocess.run([sys.executable, *launch, "-m", "benchmarks.trainer_probe", "--report",
                               str(out / "probe-{rank}.json"), "--gradients", str(out / "gradients-{rank}.safetensors"),
                               "--gradient-steps", str(steps), "trainers.styleforge",
                               *argv(tiny_checkpoint("sd15"), image_sets, out, "--flip", "--batch-size",
                                     str(batch_size), steps=steps)],
                              cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        return [load_file(str(out / f"gradients-{rank}.safetensors")) for rank in range(ranks)]

    ranks, single = tmp_path / "ranks", tmp_path / "single"
    (a, a1), (b,) = gradients(ranks, 2, 1), gradients(single, 1, 2)
    assert json.loads((ranks / "run_summary.json").read_text())["facts"]["ranks"] == "2"
    assert read_lora(ranks / "styleforge.safetensors")[1].components[0].trigger == "zwx style"
    assert a.keys() == a1.keys() == b.keys() and {k.split(".")[0] for k in b} == {"1", "2", "3"}
    assert all(torch.equal(a[k], a1[k]) for k in a), "both ranks apply the same averaged gradients"
    scale = {k: b[k].abs().max().item() for k in b}
    difference = {k: (a[k] - b[k]).abs().max().item() for k in b}
    # At step 1 every LoRA up weight has a gradient and every down weight none (exactly zero), since up starts at 0;
    # from step 2 on both have one
    first = [k for k in b if k.startswith("1.")]
    assert sum(scale[k] > 0 for k in first) == len(first) // 2 and max(scale.values()) > 1e-3, scale
    assert all(scale[k] > 0 for k in b if not k.startswith("1.")), "from step 2 every tensor has a gradient"
    # Each step has its own items, noise and timesteps: steps' gradients differ by O(1) of their scale
    assert all((b[f"2.{k[2:]}"] - b[k]).abs().max() > 0.1 * scale[k] for k in first if scale[k] > 0)
    # Per-tensor gradient scales span 4e-4 to 2e-2, so an absolute 1e-5 would pass a 2% error in the smallest: the
    # honest reading is relative to each tensor's largest |grad|. At step 1 split and batched passes differ by float32
    # rounding only (measured: at most 1.1e-6 of the scale); other noise or items differ by O(1) of it, and even
    # dropping --flip on the batched side by 2e-3 to 4e-3 of it in every tensor. Adam's first step moves every weight
    # by about lr whatever its gradient's size, so rounding in near-zero gradients grows: measured worst 8e-5 of the
    # scale at step 2 and 3e-4 at step 3, the median tensor 2e-6 and 4e-6. Rank-local gradients at a step differ by
    # O(1) of it.
    for step, worst_bound, median_bound in (("1", 1e-5, 1e-5), ("2", 2e-3, 2e-5), ("3", 2e-3, 2e-5)):
        relative = sorted((difference[k] / scale[k], k) for k in b if k.startswith(step + ".") and scale[k] > 0)
        assert relative[-1][0] <= worst_bound, f"step {step}, {relative[-1][1]}: {relative[-1][0]:.2e} of its scale"
        assert relative[len(relative) // 2][0] <= median_bound, f"step {step}: median {relative[len(relative) // 2][0]:.2e}"
