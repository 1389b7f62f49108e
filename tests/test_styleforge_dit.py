"""StyleForge on Flux.2 Klein 4B (Z-Image here for the wrong pairing only; its own run, one because its tiny model is
0.9B, is in test_zimage_training.py): Multi-StyleForge trains with flow matching and its loss falls on a fixed-noise
held-out check; the file has ComfyUI-native keys that stock LoraLoaderModelOnly loads whole; stock LoraLoader and our
loader node sample the same image; text-encoder outputs are computed once per prompt; gradient checkpointing keeps
the gradients; an fp8 base trains; LoRAs of another family are refused naming both."""
import logging

import pytest
import torch
from safetensors import safe_open

from comfy_adapter.diffusion import ComfyDiffusion
from core.errors import UserValueError
from core.families import FAMILIES
from core.lora.adapters import LoRASet
from core.formats.lora_file import read_lora
from devkit.example_inputs import write_styleforge_sets
from devkit.in_process import NodeExecutionError
from devkit.tiny_dit_models import SPLIT_MODELS
from trainers.styleforge import parse_args, resolve_text_encoder_training, train

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"), pytest.mark.hosts, pytest.mark.family("klein")]

KLEIN = SPLIT_MODELS["klein"]
HELD_OUT_SEEDS = range(10_000, 10_004)     # noise and sigma of the held-out check; training draws from other seeds


@pytest.fixture(scope="module")
def encode_calls():
    """Every ComfyDiffusion.encode_prompt call of this module, by prompt. The tiny Qwen3-4B takes seconds a prompt, so
    a prompt encoded once is served from memory to later runs (its text encoder is frozen and the same file)."""
    calls, memory, original = [], {}, ComfyDiffusion.encode_prompt

    def counted(self, text):
        calls.append(text)
        if text not in memory:
            memory[text] = original(self, text)
        return memory[text]
    ComfyDiffusion.encode_prompt = counted
    yield calls
    ComfyDiffusion.encode_prompt = original


@pytest.fixture(scope="module")
def image_sets(tmp_path_factory):
    return write_styleforge_sets(tmp_path_factory.mktemp("styleforge-dit-data"), references=2)["refs"].parent


def klein_argv(tiny_models_dir, out, *extra, steps=12):
    return ["--diffusion-model", str(tiny_models_dir / "diffusion_models" / KLEIN.diffusion_model),
            "--text-encoder", str(tiny_models_dir / "text_encoders" / KLEIN.text_encoder),
            "--vae", str(tiny_models_dir / "vae_approx" / KLEIN.vae), "--output-dir", str(out), "--resolution", "64",
            "--steps", str(steps), "--lr", "1e-2", "--rank", "4", "--sample-steps", "0", "--save-dtype", "fp32",
            "--workers", "0", "--no-resume", *extra]


def components(root) -> list[str]:
    return ["--component", f"name=characters,identifier=zwx,styleref={root / 'refs'},aux={root / 'aux'}",
            "--component", f"name=backgrounds,identifier=qwv,styleref={root / 'refs2'},aux={root / 'aux2'}"]


@pytest.fixture(scope="module")
def klein_run(comfy_in_process, tiny_split_model, tiny_models_dir, image_sets, encode_calls, tmp_path_factory):
    """Multi-StyleForge on tiny Klein; the text-encoder calls of the run and whether the encoder was loaded after.
    (The in-process host comes first: it configures ComfyUI in this process.)"""
    import comfy.model_management
    tiny_split_model("klein")
    torch.set_num_threads(1)
    result = train(parse_args(klein_argv(tiny_models_dir, tmp_path_factory.mktemp("klein-run"),
                                         *components(image_sets))))
    loaded = [m.model for m in comfy.model_management.current_loaded_models]
    return result, list(encode_calls), result.diffusion.clip.patcher in loaded


def held_out_loss(result, d) -> float:
    """Flow-matching loss of a component's StyleRef images under its instance prompt, on fixed noises and sigmas
    (HELD_OUT_SEEDS) the run never drew: evaluated with the LoRA detached (before) and attached (after)."""
    diffusion = result.diffusion
    from tests.test_styleforge import encoded
    with torch.no_grad():
        cond, pooled = diffusion.encode_prompt(d.instance_prompt)
        losses = [diffusion.diffusion_loss(latent[None], cond, pooled, torch.Generator().manual_seed(seed))
                  for seed in HELD_OUT_SEEDS for latent in encoded(result, d.styleref)]
    return float(torch.stack(losses).mean())


def test_multi_styleforge_on_klein_loss_falls_on_the_held_out_check(klein_run):
    result, _, _ = klein_run
    assert type(result.diffusion.unet.model_sampling).__name__ and result.diffusion.family == "klein"
    after = [held_out_loss(result, d) for d in result.data]
    result.loras["unet"].detach()
    before = [held_out_loss(result, d) for d in result.data]
    result.loras["unet"].attach()
    for d, b, a in zip(result.data, before, after):
        assert a < 0.9 * b, f"{d.component.name}: held-out flow-matching loss {b:.4f} -> {a:.4f}"


def test_the_trainer_draws_sigmas_from_the_models_own_flow_table(klein_run):
    """Klein's model_sampling is ComfyUI's CONST (x_t = (1 - sigma) x0 + sigma noise), and the trainer's sigmas come
    from its own shifted table. (The velocity target every trainer shares is pinned in test_style_token_training_dit.)"""
    import comfy.model_sampling
    diffusion = klein_run[0].diffusion
    assert isinstance(diffusion.unet.model_sampling, comfy.model_sampling.CONST)
    sigmas = diffusion.sample_sigmas(64, torch.Generator().manual_seed(2))
    assert torch.isin(sigmas, diffusion.unet.model_sampling.sigmas.float()).all() and sigmas.max() <= 1


def test_klein_lora_has_native_keys_and_records_its_family(klein_run):
    result, _, _ = klein_run
    tensors, info = read_lora(result.lora_path)
    assert info.family == "klein" and [c.trigger for c in info.components] == ["zwx style", "qwv style"]
    unet = result.diffusion.unet_module
    expected = {n for n, m in unet.named_modules() if isinstance(m, torch.nn.Linear)
                and (".img_attn." in n or ".txt_attn." in n or "_mlp." in n or ".linear1" in n or ".linear2" in n)}
    modules = {k.rsplit(".", 2)[0] if k.endswith(".weight") else k.rsplit(".", 1)[0] for k in tensors}
    assert modules == {f"diffusion_model.{n}" for n in expected}
    assert set(tensors) == {f"{m}.{part}" for m in modules for part in ("lora_down.weight", "lora_up.weight", "alpha")}
    assert "text_encoder" not in result.loras, "the LLM's LoRA must be off by default"
    with safe_open(str(result.lora_path), "pt") as f:
        assert f.metadata()["stylesmith.family"] == "klein"


def test_text_encoder_runs_once_per_distinct_prompt_and_is_released(klein_run):
    result, calls, encoder_loaded = klein_run
    prompts = [f"a photo of {w}" for w in ("zwx style", "style", "qwv style")]
    assert sorted(calls) == sorted(set(calls)) and set(calls) == set(prompts), calls
    assert not encoder_loaded, "the text encoder stayed loaded through the steps"


def test_stock_lora_loader_loads_every_key_and_reproduces_the_trainers_model(klein_run, comfy_in_process, caplog):
    result, _, _ = klein_run
    diffusion, stock = result.diffusion, comfy_in_process.node_classes
    tensors, _ = read_lora(result.lora_path)
    x = torch.randn(1, 128, 4, 4, generator=torch.Generator().manual_seed(0))
    sigma = torch.tensor([0.6])
    cond, pooled = diffusion.encode_prompt("a photo of zwx style")
    with torch.no_grad():
        trained = diffusion.unet.apply_model(x, sigma, **diffusion.model_inputs(cond, pooled, x))
        result.loras["unet"].detach()
        base = diffusion.unet.apply_model(x, sigma, **diffusion.model_inputs(cond, pooled, x))
        result.loras["unet"].attach()
    (model,) = stock["UNETLoader"]().load_unet(KLEIN.diffusion_model, "default")
    with caplog.at_level(logging.WARNING):
        (patched,) = stock["LoraLoaderModelOnly"]().load_lora_model_only(model, lora_file(comfy_in_process, result),
                                                                         1.0)
    assert not [r.getMessage() for r in caplog.records if "lora key not loaded" in r.getMessage()]
    assert len(patched.patches) == len(tensors) // 3
    import comfy.model_management
    comfy.model_management.load_models_gpu([patched], force_full_load=True)
    with torch.no_grad():
        conds = patched.model.extra_conds(cross_attn=cond, noise=x, device=x.device)
        loaded = patched.model.apply_model(x, sigma, **{k: v.cond for k, v in conds.items()})
    assert ((base - trained).norm() / trained.norm()).item() > 1e-3, "the LoRA changes nothing: the test is vacuous"
    assert ((loaded - trained).norm() / trained.norm()).item() <= 1e-5


def lora_file(comfy_in_process, result) -> str:
    """The run's LoRA, copied into the in-process host's models/loras; its name there (one per family)."""
    folder = comfy_in_process.base_dir / "models" / "loras"
    folder.mkdir(parents=True, exist_ok=True)
    name = f"test-styleforge-{result.diffusion.family}.safetensors"
    (folder / name).write_bytes(result.lora_path.read_bytes())
    return name


def sample(model, cond) -> torch.Tensor:
    import comfy.sample
    latent = torch.zeros(1, 128, 4, 4)
    return comfy.sample.sample(model, comfy.sample.prepare_noise(latent, 3), 4, 1.0, "euler", "simple",
                               [[cond, {}]], [[torch.zeros_like(cond), {}]], latent, seed=3, disable_pbar=True)


def test_stock_lora_loader_and_our_loader_node_sample_the_same_image(klein_run, comfy_in_process):
    """Our node applies the file through ComfyUI's own LoRA patching (comfy.sd.load_lora_for_models, as LoraLoader
    does), after its family check: the same file must give bit-identical samples."""
    result, _, _ = klein_run
    stock, name = comfy_in_process.node_classes, lora_file(comfy_in_process, result)
    (model,) = stock["UNETLoader"]().load_unet(KLEIN.diffusion_model, "default")
    (clip,) = stock["CLIPLoader"]().load_clip(KLEIN.text_encoder, "flux2")
    cond, _ = result.diffusion.encode_prompt("a photo of zwx style")
    stock_model, _ = stock["LoraLoader"]().load_lora(model, clip, name, 1.0, 1.0)
    ours = stock["StyleSmithStyleForgeLoraLoader"].execute(model, clip, name, 1.0, 1.0)
    assert ours.result[2] == "zwx style, qwv style"
    with_stock, with_ours, without = sample(stock_model, cond), sample(ours.result[0], cond), sample(model, cond)
    assert (with_stock - without).abs().max() > 1e-3, "the LoRA changes nothing: the test is vacuous"
    assert torch.equal(with_stock, with_ours)


def loader_error(comfy_in_process, unet: str, lora: str, clip_type: str) -> str:
    graph = {"1": {"class_type": "UNETLoader", "inputs": {"unet_name": unet, "weight_dtype": "fp8_e4m3fn"}},
             "2": {"class_type": "CLIPLoader", "inputs": {"clip_name": KLEIN.text_encoder, "type": clip_type}},
             "3": {"class_type": "StyleSmithStyleForgeLoraLoader", "inputs": {
                 "model": ["1", 0], "clip": ["2", 0], "lora_name": lora, "strength_model": 1.0, "strength_clip": 1.0}}}
    with pytest.raises(NodeExecutionError) as error:
        comfy_in_process.run(graph, outputs_of=("3",))
    return str(error.value)


def test_an_sd_lora_on_klein_is_refused_naming_both_families(comfy_in_process, tiny_split_model):
    tiny_split_model("klein")
    message = loader_error(comfy_in_process, KLEIN.diffusion_model, "stylesmith-tiny-styleforge-sd15.safetensors",
                           "flux2")
    assert "is a LoRA for SD1.x but the MODEL is Flux.2 Klein 4B" in message


@pytest.mark.family("zimage")
def test_zimage_layers_get_native_names_and_a_klein_lora_is_refused_naming_both(klein_run, comfy_in_process,
                                                                                 tiny_split_model):
    """Z-Image's targets: five linear layers per joint block, each with the name ComfyUI maps; our loader refuses a
    Klein LoRA on it, before touching the CLIP."""
    from comfy_adapter.kohya_names import unet_names
    result, _, _ = klein_run
    stock = comfy_in_process.node_classes
    (model,) = stock["UNETLoader"]().load_unet(tiny_split_model("zimage").diffusion_model, "fp8_e4m3fn")
    lora_set = LoRASet(model.model.diffusion_model, FAMILIES["zimage"].lora.targets, 1, 1.0)
    blocks = [m for m in model.model.diffusion_model.modules() if type(m).__name__ == "JointTransformerBlock"]
    assert len(lora_set.names) == 5 * len(blocks) > 0
    assert unet_names(model.model, lora_set.names, "zimage") == {n: f"diffusion_model.{n}" for n in lora_set.names}
    with pytest.raises(ValueError, match="is a LoRA for Flux.2 Klein 4B but the MODEL is Z-Image"):
        stock["StyleSmithStyleForgeLoraLoader"].execute(model, None, lora_file(comfy_in_process, result), 1.0, 1.0)


def lora_gradients(result) -> dict[str, torch.Tensor]:
    diffusion, d = result.diffusion, result.data[0]
    from tests.test_styleforge import encoded
    cond, pooled = diffusion.encode_prompt(d.instance_prompt)
    latents = encoded(result, d.styleref)
    result.loras.zero_grad()
    with diffusion.training():
        diffusion.diffusion_losses(latents, cond.expand(len(latents), -1, -1), pooled,
                                 [torch.Generator().manual_seed(s) for s in range(len(latents))]).mean().backward()
    return {n: p.grad.clone() for n, p in result.loras.named_parameters()}


def test_gradient_checkpointing_of_the_transformer_blocks_keeps_the_gradients(klein_run):
    result, _, _ = klein_run
    plain = lora_gradients(result)
    blocks = [m for m in result.diffusion.unet_module.modules()
              if type(m).__name__ in ("DoubleStreamBlock", "SingleStreamBlock")]
    assert result.diffusion.enable_gradient_checkpointing() == len(blocks) > 0
    checkpointed = lora_gradients(result)
    assert plain.keys() == checkpointed.keys()
    for name, grad in plain.items():
        assert grad.abs().max() > 0, name
        torch.testing.assert_close(checkpointed[name], grad, rtol=1e-5, atol=1e-8, msg=name)


def test_an_fp8_base_trains(tiny_models_dir, image_sets, klein_run, tmp_path):
    result = train(parse_args(klein_argv(tiny_models_dir, tmp_path, "--base-weight-dtype", "fp8_e4m3fn",
                                         "--styleref", str(image_sets / "refs"), "--aux", str(image_sets / "aux"),
                                         steps=3)))
    assert result.diffusion.base_dtypes["UNet"] == torch.float8_e4m3fn
    losses = [loss for _, loss in result.history["style instance"]]
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))
    assert any(p.abs().max() > 0 for n, p in result.loras.named_parameters() if ".up." in n), "no step was taken"


def test_text_encoder_lora_is_off_by_default_for_llm_encoders_and_refused_by_name(tmp_path):
    base = ["--checkpoint", "x.safetensors", "--styleref", "r", "--aux", "a", "--output-dir", str(tmp_path)]
    for family, flag, expected in (("klein", [], False), ("zimage", [], False), ("flux1", [], False),
                                   ("sd15", [], True), ("sdxl", ["--no-train-text-encoder"], False)):
        args = parse_args(base + flag)
        resolve_text_encoder_training(args, family)
        assert args.train_text_encoder is expected, family
    args = parse_args(base + ["--train-text-encoder"])
    with pytest.raises(UserValueError, match="Flux.2 Klein 4B's text encoder Qwen3-4B is an LLM"):
        resolve_text_encoder_training(args, "klein")
    with pytest.raises(SystemExit):
        parse_args(base + ["--base-weight-dtype", "fp8_e4m3fn"])      # split files only
