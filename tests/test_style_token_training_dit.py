"""Style-token training (stages 1-3) on Flux.2 Klein 4B and Z-Image, from their split files: the model's own
objective read from ComfyUI's model_sampling (flow matching here, eps on SD, one code path), the trainer's
conditioning equal to the prompt node's, no pooled vector, and a stage-1 loss that falls on a fixed-noise held-out
check. Z-Image's 0.9B model is loaded by one test only (its held-out check)."""
import pytest
import torch

from core.data.style_dataset import read_style_dataset
from core.data.synthetic_styles import write_synthetic_style_set
from core.errors import UserValueError
from devkit.tiny_dit_models import SPLIT_MODELS
from trainers.precision import Precision
from trainers.style_tokens import stage1

pytestmark = pytest.mark.hosts
CAPTION = "a lighthouse on a cliff, in the style of sks"


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return write_synthetic_style_set(tmp_path_factory.mktemp("synthetic"), styles=2, contents=1, size=64, seed=3)


def split_args(tiny_models_dir, family: str = "klein") -> list[str]:
    spec = SPLIT_MODELS[family]
    return ["--diffusion-model", str(tiny_models_dir / "diffusion_models" / spec.diffusion_model),
            "--text-encoder", str(tiny_models_dir / "text_encoders" / spec.text_encoder),
            "--vae", str(tiny_models_dir / "vae_approx" / spec.vae)]


def open_for_stage1(family: str, tiny_split_model, tiny_models_dir):
    """A family's tiny split files, opened as the style-token trainers open them (gradients through the encoder)."""
    from comfy_adapter.split_files import open_split_files
    spec = tiny_split_model(family)
    diffusion = open_split_files(tiny_models_dir / "diffusion_models" / spec.diffusion_model,
                                 [tiny_models_dir / "text_encoders" / spec.text_encoder],
                                 tiny_models_dir / "vae_approx" / spec.vae, torch.device("cpu"))
    diffusion.allow_text_encoder_gradients()
    return diffusion


@pytest.fixture(scope="module")
def klein(comfy_in_process, tiny_split_model, tiny_models_dir):
    return open_for_stage1("klein", tiny_split_model, tiny_models_dir)


def stage1_held_out_losses(diffusion, synthetic, tiny_models_dir, steps: int, lr: float) -> dict[str, float]:
    """Stage 1's fixed-noise held-out check on the first image: its loss under its caption, averaged over 4 (noise,
    sigma) pairs fixed by seeds 1000-1003 that training never draws (its draws come from (seed, image id, step)).

    Returns the loss with the initial tokens ("before"), with the tokens after `steps` inversion steps ("after"), and
    with the initial tokens moved as far as training moved them but in a random direction ("moved at random"): a
    caption that shifts the loss by chance shifts it as much both ways, while learnt tokens lower it further."""
    from comfy_adapter.families import text_encoder_widths
    args = stage1.parse_args([*split_args(tiny_models_dir, diffusion.family), "--data", str(synthetic),
                              "--output-dir", "/unused", "--resolution", "64", "--steps", str(steps), "--lr", str(lr),
                              "--sample-steps", "0"])
    example = read_style_dataset(synthetic).examples[0]
    latents = diffusion.encode_images(stage1.load_images([example], 64, workers=0))
    widths = text_encoder_widths(diffusion.clip)

    def fixed_loss(tokens) -> float:
        generators = [torch.Generator().manual_seed(1000 + s) for s in range(4)]
        rows = {k: v.expand(4, -1, -1) for k, v in tokens.items()}
        with torch.no_grad(), diffusion.training():
            return stage1.batch_loss(diffusion, latents.expand(4, -1, -1, -1), [example.caption] * 4, rows, "sks",
                                     generators).mean().item()

    start = stage1.init_tokens([example.id], widths, 8, 0.02, args.seed)
    with diffusion.training():
        tokens, _ = stage1.invert_batch(diffusion, Precision.resolve("fp32", diffusion.device), latents,
                                        [example.caption], [example.id], args, widths)
    direction = torch.Generator().manual_seed(7)
    at_random = {}
    for key, value in start.items():
        step = torch.randn(value.shape, generator=direction)
        at_random[key] = value.detach() + step * (tokens[key].detach() - value.detach()).norm() / step.norm()
    return {"before": fixed_loss(start), "after": fixed_loss(tokens), "moved at random": fixed_loss(at_random)}


@pytest.mark.family("klein")
def test_the_objective_is_the_one_model_sampling_implies(klein):
    """Klein (ComfyUI's CONST flow sampling): x_t = sigma * noise + (1 - sigma) * x0 and the target of the network's
    raw output is the velocity noise - x0; reading the output back from ComfyUI's x0 estimate gives (x_t - x0_hat) /
    sigma. SD1.x's eps sampling, through the same code: the target is the noise itself, bit for bit."""
    import comfy.model_base
    import comfy.supported_models
    from comfy_adapter import objective
    sampling = klein.unet.model_sampling
    generator = torch.Generator().manual_seed(0)
    noise, x0 = torch.randn(3, 128, 4, 4, generator=generator), torch.randn(3, 128, 4, 4, generator=generator)
    sigma = klein.sample_sigmas(3, generator)
    assert ((sigma > 0) & (sigma <= 1)).all(), sigma
    x_t = sampling.noise_scaling(sigma, noise, x0)
    assert torch.allclose(x_t, sigma[:, None, None, None] * noise + (1 - sigma[:, None, None, None]) * x0, atol=1e-6)
    target = objective.training_target(sampling, sigma, noise, x0)
    assert torch.allclose(target, noise - x0, atol=1e-5), (target - (noise - x0)).abs().max()
    assert not torch.allclose(target, noise, atol=1e-1), "a flow model's target is not the noise"
    x0_hat = torch.randn(3, 128, 4, 4, generator=generator)
    assert torch.allclose(objective.raw_output(sampling, sigma, x0_hat, x_t),
                          (x_t - x0_hat) / sigma[:, None, None, None], atol=1e-5)

    sd15 = comfy.supported_models.SD15({})
    eps_sampling = comfy.model_base.model_sampling(sd15, comfy.model_base.ModelType.EPS)
    eps_sigma = eps_sampling.sigmas[torch.tensor([10, 500, 990])]
    assert torch.equal(objective.training_target(eps_sampling, eps_sigma, noise, x0), noise)


@pytest.mark.family("zimage")
def test_z_image_trains_on_its_own_shifted_flow_schedule():
    """Z-Image's objective from its ComfyUI config alone (no weights): flow matching, sigmas from its shifted table."""
    import comfy.model_base
    import comfy.supported_models
    from comfy_adapter import objective
    sampling = comfy.model_base.model_sampling(comfy.supported_models.ZImage({}), comfy.model_base.ModelType.FLOW)
    assert sampling.shift == 3.0
    generator = torch.Generator().manual_seed(1)
    noise, x0 = torch.randn(2, 16, 4, 4, generator=generator), torch.randn(2, 16, 4, 4, generator=generator)
    sigma = sampling.sigmas[torch.tensor([100, 700])]
    assert torch.allclose(objective.training_target(sampling, sigma, noise, x0), noise - x0, atol=1e-5)


@pytest.mark.family("klein")
def test_the_trainer_conditions_klein_exactly_as_the_prompt_node(comfy_in_process, klein):
    """The caption with its placeholder goes through the chat template the node's way: equal conditioning, and no
    pooled vector (Klein has none)."""
    from comfy_adapter.diffusion import encode_prompt_with_style
    from core.style_tokens.tokens import StyleTokens
    vectors = {"qwen3_4b": torch.randn(8, 2560, generator=torch.Generator().manual_seed(0)) * 0.02}
    with torch.no_grad():
        trainer_cond, trainer_pooled = encode_prompt_with_style(klein, CAPTION, vectors, "sks")
        plain_cond, _ = klein.encode_prompt(CAPTION)
    node = comfy_in_process.node_classes["StyleSmithEncodePromptWithStyle"]
    (node_cond, node_extra), = node.execute(clip=klein.clip, style_tokens=StyleTokens(
        {"qwen3_4b": vectors["qwen3_4b"][None]}, "klein"), text=CAPTION, placeholder="sks")[0]
    assert trainer_cond.shape == (1, 512, 7680)
    assert torch.equal(trainer_cond, node_cond)
    assert trainer_pooled is None and node_extra.get("pooled_output") is None
    assert not torch.equal(trainer_cond, plain_cond), "the vectors must reach the conditioning"


@pytest.mark.family("klein")
def test_stage1_loss_falls_on_a_fixed_noise_held_out_check(klein, synthetic, tiny_models_dir):
    losses = stage1_held_out_losses(klein, synthetic, tiny_models_dir, steps=8, lr=0.05)
    print(f"Klein stage 1 held-out losses {losses}")
    # Measured 3.877 -> 3.653 (-5.8%) on the tiny random Klein; the check is deterministic (fixed seeds).
    assert losses["after"] <= 0.97 * losses["before"], losses
    assert losses["after"] < losses["moved at random"], losses


@pytest.mark.family("zimage")
def test_z_image_stages_1_and_3_lower_the_loss_on_fixed_noise_held_out_checks(comfy_in_process, tiny_split_model,
                                                                               synthetic, tiny_models_dir, tmp_path):
    """On the tiny random Z-Image the caption moves the loss little (its one joint layer is the only place the image
    reads the caption): other captions, tokens x10 or random tokens move it by 0.05-0.3%. So stage 1 takes 24 steps
    and must lower the loss 1% and more than a random move of the same size does; stage 3 takes 24 steps of a random
    encoder and must lower its tokens' loss 1% (measured 2.122 -> 2.084, -1.8%; 12 steps gave -0.6%)."""
    from comfy_adapter.families import text_encoder_tokenizers
    from core.formats.style_encoder_file import save_style_encoder
    from devkit.tiny_style_encoders import build_style_encoder
    from tests.test_style_token_training import stage3_fixed_noise_losses
    from trainers.style_tokens import stage3
    zimage = open_for_stage1("zimage", tiny_split_model, tiny_models_dir)
    if any(t.embedding_directory is None for t in text_encoder_tokenizers(zimage.clip).values()):
        with pytest.raises(UserValueError, match="reads no `embedding:` and style tokens cannot reach"):
            stage1_held_out_losses(zimage, synthetic, tiny_models_dir, steps=1, lr=0.5)
        return      # ComfyUI 0.3.75: the trainer refuses as the node does
    losses = stage1_held_out_losses(zimage, synthetic, tiny_models_dir, steps=24, lr=0.5)
    print(f"Z-Image stage 1 held-out losses {losses}")
    assert losses["after"] <= 0.99 * losses["before"], losses
    assert losses["before"] - losses["after"] >= 2 * abs(losses["before"] - losses["moved at random"]), losses

    start = tmp_path / "start.safetensors"
    save_style_encoder(build_style_encoder("zimage", seed=2), start)
    stage3.train(stage3.parse_args([*split_args(tiny_models_dir, "zimage"), "--data", str(synthetic), "--encoder",
                                    str(start), "--output-dir", str(tmp_path / "out"), "--resolution", "64",
                                    "--steps", "24", "--batch-size", "2", "--lr", "3e-2", "--sample-steps", "0",
                                    "--workers", "0"]))
    before, after = stage3_fixed_noise_losses(zimage, synthetic, start, tmp_path / "out" / "style_encoder.safetensors")
    print(f"Z-Image stage 3 held-out loss {before:.4f} -> {after:.4f}")
    assert after <= 0.99 * before, f"fixed-noise loss {before:.4f} -> {after:.4f}"


@pytest.mark.family("klein")
def test_stages_1_2_and_3_run_on_klein_split_files(klein, synthetic, tiny_models_dir, tmp_path):
    """Stage 1 inverts each image into qwen3_4b tokens stored as Klein's, stage 2 fits an encoder with a qwen3_4b
    head to them, and stage 3 moves that encoder through Qwen3-4B and Klein's transformer, lowering the loss of its
    tokens on fixed noises and sigmas that training never draws (seeds 500-507)."""
    from core.formats.style_encoder_file import load_style_encoder
    from tests.test_style_token_training import stage3_fixed_noise_losses
    from core.formats.token_shards import load_tokens, read_index
    from trainers.style_tokens import stage2, stage3
    tokens = tmp_path / "tokens"
    stage1.train(stage1.parse_args([*split_args(tiny_models_dir), "--data", str(synthetic), "--output-dir", str(tokens),
                                    "--resolution", "64", "--steps", "2", "--batch-size", "2", "--sample-steps", "0",
                                    "--workers", "0"]))
    index = read_index(tokens)
    stored, metadata = load_tokens(tokens, sorted(index))
    assert len(index) == 2 and stored["qwen3_4b"].shape == (2, 8, 2560)
    assert metadata["stylesmith.family"] == "klein"
    stage2.train(stage2.parse_args(["--data", str(synthetic), "--tokens", str(tokens), "--output-dir",
                                    str(tmp_path / "enc"), "--architecture", "StyleSmith-Tiny-ViT", "--random-init",
                                    "--steps", "2", "--holdout", "0.5", "--workers", "0"]))
    start = tmp_path / "enc" / "style_encoder.safetensors"
    assert load_style_encoder(start).config.heads == {"qwen3_4b": 2560}
    stage3.train(stage3.parse_args([*split_args(tiny_models_dir), "--data", str(synthetic), "--encoder", str(start),
                                    "--output-dir", str(tmp_path / "out"), "--resolution", "64", "--steps", "8",
                                    "--batch-size", "2", "--lr", "1e-2", "--sample-steps", "0", "--workers", "0"]))
    trained = tmp_path / "out" / "style_encoder.safetensors"
    before, after = load_style_encoder(start), load_style_encoder(trained)
    changed = [k for k, v in after.state_dict().items() if not torch.equal(v, before.state_dict()[k])]
    assert after.config.training["stage"] == 3 and any(k.startswith("heads.qwen3_4b") for k in changed), changed
    before_loss, after_loss = stage3_fixed_noise_losses(klein, synthetic, start, trained)
    print(f"Klein stage 3 held-out loss {before_loss:.4f} -> {after_loss:.4f}")
    # Measured 3.791 -> 3.683 (-2.8%), deterministic; with lr 1e-9 it stays and the check fails.
    assert after_loss <= 0.98 * before_loss, f"fixed-noise loss {before_loss:.4f} -> {after_loss:.4f}"
