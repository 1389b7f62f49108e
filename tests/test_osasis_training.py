"""The OSASIS one-shot trainer: loss, trainer/node parity through the written file, resume, bad input."""
import re
import shutil
import sys

import pytest
import torch

from core.data.image_folder import DatasetError
from core.formats.osasis_style_file import load_osasis_style
from devkit.processes import kill_when_written
from devkit.tiny_style_encoders import DEFAULT_STYLE_ENCODERS
from trainers.osasis.train import parse_args, train

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
PARITY_CONTENT = "stylesmith-osasis-parity-content.png"


def argv(checkpoint, images, encoder, out, *extra, steps=10):
    return ["--checkpoint", str(checkpoint), "--style", str(images / "style.png"), "--content", str(images / "content"),
            "--style-encoder", str(encoder), "--output-dir", str(out), "--resolution", "64", "--ddim-steps", "10",
            "--steps", str(steps), "--sampler-steps", "3", "--sdedit-candidates", "2", "--save-dtype", "fp32",
            "--batch-size", "1", "--no-resume", *extra]


@pytest.fixture(scope="module")
def encoder(tiny_models_dir):
    return tiny_models_dir / "style_encoders" / DEFAULT_STYLE_ENCODERS["sd15"]


@pytest.fixture(scope="module")
def trained(tiny_checkpoint, osasis_images, encoder, tmp_path_factory):
    out = tmp_path_factory.mktemp("osasis-run")
    return train(parse_args(argv(tiny_checkpoint("sd15"), osasis_images, encoder, out)))


def test_loss_falls_over_ten_iterations_and_pictures_are_written(trained):
    total = [value for _, value in trained.history["total"]]
    assert len(total) == 10
    assert total[-1] < 0.99 * total[0], total
    assert sum(total[-3:]) < sum(total[:3]), total
    assert set(trained.history) == {"cross-domain", "in-domain", "reconstruction", "total"}
    for picture in ("loss.png", "samples.png"):
        assert (trained.style_path.parent / picture).stat().st_size > 1000


def test_style_file_records_the_schedule_semantics_and_reference(trained):
    style = load_osasis_style(trained.style_path)
    assert (style.family, style.t0, style.steps, style.scheduler, style.spn_weight) == ("sd15", 0.5, 10, "normal", 0.1)
    assert style.semantic["source"] == "style_encoder" and style.semantic["placeholder"] == "sks"
    assert style.reference["photo"]["source"] == "sdedit" and style.reference["style"] == "style.png"
    assert style.thumbnails["style"].shape == (128, 128, 3) and style.thumbnails["style"].dtype == torch.uint8
    assert max(v.abs().max() for k, v in style.lora.items() if k.endswith("lora_up.weight")) > 0
    assert style.spn.conv_out.weight.abs().max() > 0, "the SPN must have been trained"


def test_the_style_branch_starts_from_the_photo_and_must_reach_the_style_image(trained, tiny_checkpoint,
                                                                               osasis_images, encoder, tmp_path):
    """As the authors train it: the style branch runs from the code of the photoreal counterpart I_A^s (its latent,
    its z_sem) and must reconstruct the style image I_B^s. With B = A (LoRA off) and a zero SPN it gives I_A^s
    back, so its reconstruction loss at iteration 0 is the distance from I_A^s to I_B^s, which training must
    close; started from I_B^s it would be about 0 and teach nothing."""
    from comfy_adapter.bridge import structure_sigmas
    from core.osasis.losses import reconstruction_loss
    from core.sampling.ddim import ddim_invert
    from core.osasis.spn import StructurePreservingNetwork
    from trainers.osasis.encoders import load_encoders
    from trainers.osasis.step import Encoded, OsasisStep
    args = parse_args(argv(tiny_checkpoint("sd15"), osasis_images, encoder, tmp_path))
    diffusion, photo = trained.diffusion, trained.photo
    assert torch.equal(photo.clean, diffusion.encode_images(trained.images.photo))
    assert not torch.allclose(photo.clean, diffusion.encode_images(trained.images.style))
    _, encode = load_encoders(diffusion, args)
    trained.lora.detach()
    step = OsasisStep(diffusion, trained.lora, StructurePreservingNetwork(), encode, None, trained.images.style,
                      trained.images.photo, args)
    # The random tiny VAE's latents are far from unit scale, where inversion is exact: a unit-scale stand-in for
    # I_A^s's latent, under I_A^s's own z_sem, on a 50-step schedule.
    clean = torch.randn(photo.clean.shape, generator=torch.Generator().manual_seed(0)) / 0.18215
    sigmas = structure_sigmas(diffusion.model, "normal", 50, 0.5).double()
    timesteps = diffusion.unet.model_sampling.timestep(sigmas.float())
    with torch.no_grad():
        code = ddim_invert(clean, sigmas, lambda x, s: diffusion.eps(x, s, photo.denoiser_inputs(diffusion)), 3)
        start = Encoded(photo.images, clean, photo.codes, code)
        x = code
        for k in range(len(sigmas) - 1):
            x, x0_image, loss = step.style_step(x, start, float(sigmas[k]), float(sigmas[k + 1]), timesteps[k])
        photo_image = diffusion.decode_latents(clean, args.loss_resolution)
        distance = reconstruction_loss(encode, photo_image, step.style, None)
    assert ((x - clean).norm() / clean.norm()).item() <= 1e-3, "B = A must give I_A^s back"
    assert loss.item() == pytest.approx(distance.item(), rel=1e-3)
    assert loss.item() > 0.05, "the branch must start away from the style image"
    assert reconstruction_loss(encode, step.style, step.style, None).item() < 1e-4 * loss.item()


def test_the_decode_node_reproduces_the_trainers_stylised_latent(trained, osasis_images, comfy_in_process):
    """Node graph from the image file (VAE encode, semantic encode, exact inversion, the written style file)
    against the trainer's in-memory LoRA + SPN decode of the same image."""
    from trainers.osasis.train import stylise
    shutil.copyfile(osasis_images / "content" / "0.png", comfy_in_process.base_dir / "input" / PARITY_CONTENT)
    folder = comfy_in_process.base_dir / "models" / "osasis"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(trained.style_path, folder / "parity.safetensors")
    template = {"template": "a picture in the style of sks", "placeholder": "sks"}
    graph = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "stylesmith-tiny-sd15.safetensors"}},
        "2": {"class_type": "StyleSmithStyleEncoderLoader", "inputs": {"encoder_name": DEFAULT_STYLE_ENCODERS["sd15"]}},
        "3": {"class_type": "LoadImage", "inputs": {"image": PARITY_CONTENT}},
        "4": {"class_type": "VAEEncode", "inputs": {"pixels": ["3", 0], "vae": ["1", 2]}},
        "5": {"class_type": "StyleSmithOsasisSemanticEncode",
              "inputs": {"image": ["3", 0], "clip": ["1", 1], "style_encoder": ["2", 0], **template}},
        "6": {"class_type": "StyleSmithOsasisStructuralEncode",
              "inputs": {"model": ["1", 0], "latent": ["4", 0], "z_content": ["5", 0], "t0": 0.5, "steps": 10,
                         "scheduler": "normal", "inversion_iterations": 3}},
        "7": {"class_type": "StyleSmithOsasisStyleLoader", "inputs": {"style_name": "parity.safetensors"}},
        "8": {"class_type": "StyleSmithOsasisDecode",
              "inputs": {"model": ["1", 0], "structure": ["6", 0], "z_content": ["5", 0], "mix": 0.0,
                         "spn_weight": 0.1, "lora_strength": 1.0, "osasis_style": ["7", 0]}},
    }
    out = comfy_in_process.run(graph, outputs_of=("8",))
    node_latent = out["8"][0]["samples"]
    diffusion = trained.diffusion
    ours = stylise(diffusion, trained.lora, trained.spn, trained.content, trained.sigmas, trained.timesteps, 0.1)
    ours = diffusion.unet.latent_format.process_out(ours).cpu()
    trained.lora.detach()
    base = diffusion.unet.latent_format.process_out(trained.content.clean).cpu()
    assert ((ours - base).norm() / base.norm()).item() > 1e-2, "the style must move the latent"
    assert ((node_latent - ours).norm() / ours.norm()).item() <= 1e-4


@pytest.fixture(scope="module")
def uninterrupted_6_steps(tiny_checkpoint, osasis_images, encoder, tmp_path_factory):
    """The style file of 6 iterations in one go, which every interrupted and resumed run must end with."""
    straight = train(parse_args(argv(tiny_checkpoint("sd15"), osasis_images, encoder,
                                     tmp_path_factory.mktemp("straight"), steps=6)))
    straight.lora.detach()
    return load_osasis_style(straight.style_path)


def assert_resumes_to_the_uninterrupted_style(tiny_checkpoint, osasis_images, encoder, out, uninterrupted):
    resumed = train(parse_args(argv(tiny_checkpoint("sd15"), osasis_images, encoder, out, steps=6)[:-1]
                               + ["--save-every", "2"]))
    resumed.lora.detach()
    a, b = load_osasis_style(resumed.style_path), uninterrupted
    assert a.lora.keys() == b.lora.keys()
    assert max((a.lora[k] - b.lora[k]).abs().max().item() for k in a.lora) <= 1e-6
    assert all(torch.allclose(x, y, atol=1e-6) for x, y in zip(a.spn.state_dict().values(), b.spn.state_dict().values()))
    assert not list(out.glob(".*partial"))


def test_sigterm_checkpoints_the_finished_iteration_and_resumes_bit_identically(
        tiny_checkpoint, osasis_images, encoder, uninterrupted_6_steps, tmp_path):
    import signal
    from devkit.processes import signal_when_written
    stopped = tmp_path / "stopped"
    command = [sys.executable, "-m", "trainers.osasis.train",
               *argv(tiny_checkpoint("sd15"), osasis_images, encoder, stopped, steps=200)[:-1], "--save-every", "2"]
    status = signal_when_written(command, stopped / "checkpoint.pt", signal.SIGTERM, tmp_path / "stderr.txt")
    err = (tmp_path / "stderr.txt").read_text()
    step = torch.load(stopped / "checkpoint.pt", weights_only=True)["step"]
    assert status == 143 and 2 < step < 6, err
    assert f"stopped by SIGTERM after step {step} of 200; the checkpoint of step {step} is in {stopped}" in err
    assert load_osasis_style(stopped / "osasis_style.safetensors").training["steps_done"] == step
    assert_resumes_to_the_uninterrupted_style(tiny_checkpoint, osasis_images, encoder, stopped, uninterrupted_6_steps)


def test_kill_and_resume_ends_where_an_uninterrupted_run_ends(tiny_checkpoint, osasis_images, encoder,
                                                               uninterrupted_6_steps, tmp_path):
    interrupted = tmp_path / "interrupted"
    command = [sys.executable, "-m", "trainers.osasis.train",
               *argv(tiny_checkpoint("sd15"), osasis_images, encoder, interrupted, steps=200)[:-1], "--save-every", "2"]
    kill_when_written(command, interrupted / "checkpoint.pt")
    saved = torch.load(interrupted / "checkpoint.pt", weights_only=True)["step"]
    assert 2 <= saved < 6
    assert_resumes_to_the_uninterrupted_style(tiny_checkpoint, osasis_images, encoder, interrupted,
                                              uninterrupted_6_steps)


def test_bad_training_input_names_the_problem(tiny_checkpoint, osasis_images, encoder, tmp_path, capsys):
    good = argv(tiny_checkpoint("sd15"), osasis_images, encoder, tmp_path / "out")
    with pytest.raises(DatasetError, match="The style image .*missing.png does not exist"):
        train(parse_args(good + ["--style", str(tmp_path / "missing.png")]))
    (tmp_path / "not-an-image.png").write_bytes(b"plain text")
    with pytest.raises(DatasetError, match="cannot be read as an image"):
        train(parse_args(good + ["--style", str(tmp_path / "not-an-image.png")]))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="content images folder .* has no usable image"):
        train(parse_args(good + ["--content", str(tmp_path / "empty")]))
    without_encoder = [a for a in good if a not in ("--style-encoder", str(encoder))]
    for bad, message in ((good + ["--t0", "0"], r"--t0 must be in \(0, 1\]"), (good + ["--t0", "1.2"], "--t0 must be in"),
                         (good + ["--sdedit-strength", "0"], "--sdedit-strength must be in"),
                         (without_encoder, "OSASIS needs a semantic code z_sem for each image: pass --style-encoder "
                                           r"\(.*\) or --clip-vision")):
        with pytest.raises(SystemExit):
            parse_args(bad)
        assert re.search(message, capsys.readouterr().err), message


@pytest.mark.sdxl
def test_sdxl_style_trains_and_loads_for_sdxl_only(tiny_checkpoint, tiny_models_dir, osasis_images, tmp_path):
    encoder = tiny_models_dir / "style_encoders" / DEFAULT_STYLE_ENCODERS["sdxl"]
    result = train(parse_args(argv(tiny_checkpoint("sdxl"), osasis_images, encoder, tmp_path, steps=2)))
    result.lora.detach()
    style = load_osasis_style(result.style_path)
    assert style.family == "sdxl"
    assert any(k.startswith("lora_unet_input_blocks_") for k in style.lora), "SDXL LoRAs use LDM block names"
    assert all(torch.isfinite(v).all() for v in style.lora.values())
    assert len(result.history["total"]) == 2



@pytest.fixture(scope="module")
def one_iteration(tiny_checkpoint, osasis_images, encoder, tmp_path_factory):
    """One real training iteration through train(), with an SPN whose output layer is non-zero, recording every
    add_structure call (branch, x, SPN input, weight, what was added, the SPN output) and the style branch's z_sem."""
    import trainers.osasis.step as step_module
    import trainers.osasis.train as train_module
    from core.osasis.spn import StructurePreservingNetwork

    def spn_with_output(channels):
        spn = StructurePreservingNetwork(channels)
        torch.nn.init.normal_(spn.conv_out.weight, std=0.5, generator=torch.Generator().manual_seed(2))
        return spn

    calls, branch = [], []
    real_add, real_style_step = step_module.add_structure, step_module.OsasisStep.style_step

    def recorded_add(x, spn, clean, timestep, weight):
        out = real_add(x, spn, clean, timestep, weight)
        with torch.no_grad():
            t = timestep.reshape(-1).expand(x.shape[0])
            calls.append({"branch": branch[-1] if branch else "content", "x": x.detach().clone(), "clean": clean,
                          "weight": weight, "added": (out - x).detach(), "spn": spn(clean, t).detach()})
        return out

    def recorded_style_step(self, x, photo, *rest):
        branch.append("style")
        first = len(calls)
        try:
            return real_style_step(self, x, photo, *rest)
        finally:
            branch.pop()
            calls[first]["inputs"] = photo.denoiser_inputs(self.diffusion)

    args = parse_args(argv(tiny_checkpoint("sd15"), osasis_images, encoder, tmp_path_factory.mktemp("one"), steps=1))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(train_module, "StructurePreservingNetwork", spn_with_output)
        patch.setattr(step_module, "add_structure", recorded_add)
        patch.setattr(step_module.OsasisStep, "style_step", recorded_style_step)
        result = train(args)
    result.lora.detach()
    return result, calls, args


def test_one_training_iteration_runs_the_style_branch_from_the_photo_code_with_the_full_spn(one_iteration):
    """Through train(): the style branch's first step starts from the code of I_A^s, conditions on z_sem of I_A^s
    (not of the style image), takes the SPN output of I_A^s's latent and adds it at weight 1; the content branch
    adds its own at --spn-weight 0.1. The SPN's output is non-zero, so a wrong weight shows."""
    from trainers.osasis.encoders import load_encoders
    result, calls, args = one_iteration
    style_calls = [c for c in calls if c["branch"] == "style"]
    content_calls = [c for c in calls if c["branch"] == "content"]
    assert len(style_calls) == len(content_calls) == len(result.sigmas) - 1 == 5
    first = style_calls[0]
    assert torch.equal(first["x"], result.photo.code), "the style branch starts from the code of I_A^s"
    assert torch.equal(first["clean"], result.diffusion.encode_images(result.images.photo)), "SPN input: I_A^s"
    codes = load_encoders(result.diffusion, args)[0].codes(torch.cat([result.images.photo, result.images.style]))
    context = first["inputs"]["c_crossattn"]
    assert torch.equal(context, codes[0][0].to(context)), "the style branch conditions on z_sem of I_A^s"
    assert not torch.allclose(codes[0][0], codes[1][0]), "z_sem of I_A^s and of I_B^s must differ for this to tell"
    for call, weight in ((first, 1.0), (content_calls[0], args.spn_weight)):
        assert call["weight"] == weight
        assert call["spn"].abs().max().item() > 1e-2, "the SPN output must be non-zero for the weight to show"
        assert torch.allclose(call["added"], weight * call["spn"], rtol=1e-5, atol=1e-6)


def test_at_iteration_zero_the_content_branch_compares_like_with_like(one_iteration, monkeypatch):
    """B = A, zero SPN, style image = its photo: the last x0 prediction of a content code is its clean latent, so
    decoded as the losses decode it, it must be the content image as the losses see it (invert_all's images), and
    the in-domain loss must vanish. Raw pixels resized with antialiasing are not what the VAE gives back.

    The cross-domain loss is not asserted: its first direction, E(x0) - E(I_A^c), is zero exactly when this holds,
    and the cosine of a zero vector is undefined (torch gives 0, so the loss reads 1 at any correct start)."""
    from comfy_adapter.bridge import structure_sigmas
    from core.osasis.spn import StructurePreservingNetwork
    from trainers.osasis.encoders import load_encoders
    from trainers.osasis.step import OsasisStep, invert_all
    result, _, args = one_iteration
    diffusion, photo = result.diffusion, result.images.photo
    code, encode = load_encoders(diffusion, args)
    # a unit-scale stand-in for the content latent (inversion is exact there; see the style-branch test above)
    clean = torch.randn(result.photo.clean.shape, generator=torch.Generator().manual_seed(1)) / 0.18215
    sigmas = structure_sigmas(diffusion.model, "normal", 50, 0.5).double()
    timesteps = diffusion.unet.model_sampling.timestep(sigmas.float())
    with monkeypatch.context() as patch:
        patch.setattr(diffusion, "encode_images", lambda images: clean.clone())
        content = invert_all(diffusion, result.images.style, code.codes(result.images.style), sigmas, 3,
                             args.loss_resolution, "")
    step = OsasisStep(diffusion, result.lora, StructurePreservingNetwork(), encode, None, photo, photo, args)
    x = content.code
    with torch.no_grad():
        for k in range(len(sigmas) - 1):
            x, _, parts = step.content_step(x, content, content.denoiser_inputs(diffusion), float(sigmas[k]), float(sigmas[k + 1]),
                                            timesteps[k])
        seen = diffusion.decode_latents(x, args.loss_resolution)
        moved = (encode(seen) - encode(content.images)).norm() / encode(content.images).norm()
    print(f"max |image difference| {(seen - content.images).abs().max().item():.2e}, CLIP move {moved.item():.2e}, "
          f"in-domain {parts['in-domain'].item():.2e}, cross-domain {parts['cross-domain'].item():.3f}")
    assert (seen - content.images).abs().max().item() <= 1e-3
    assert moved.item() <= 1e-4
    assert parts["in-domain"].item() <= 1e-4
