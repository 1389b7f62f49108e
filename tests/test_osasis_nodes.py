"""OSASIS nodes on the real host: exact structural codes, the style file in the decode, mixing, prompts,
interrupt, and bad input."""
import copy
from pathlib import Path

import pytest
import torch

from devkit.example_inputs import CONTENT_IMAGE, STYLE_REFERENCE
from devkit.in_process import NodeExecutionError, PromptValidationError
from devkit.tiny_models import TINY_CHECKPOINTS, build_checkpoint
from devkit.tiny_osasis_styles import DEFAULT_OSASIS_STYLES
from devkit.tiny_style_encoders import DEFAULT_STYLE_ENCODERS
from devkit.workflows import api_workflows

pytestmark = pytest.mark.hosts

SD15_LATENT_SCALE = 0.18215


def semantic_graph(family: str) -> dict:
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": TINY_CHECKPOINTS[family]}},
        "2": {"class_type": "StyleSmithStyleEncoderLoader", "inputs": {"encoder_name": DEFAULT_STYLE_ENCODERS[family]}},
        "3": {"class_type": "LoadImage", "inputs": {"image": CONTENT_IMAGE}},
        "4": {"class_type": "LoadImage", "inputs": {"image": STYLE_REFERENCE}},
        "5": {"class_type": "StyleSmithOsasisSemanticEncode", "inputs": {
            "image": ["3", 0], "clip": ["1", 1], "style_encoder": ["2", 0], "template": "a picture in the style of sks",
            "placeholder": "sks"}},
        "6": {"class_type": "StyleSmithOsasisSemanticEncode", "inputs": {
            "image": ["4", 0], "clip": ["1", 1], "style_encoder": ["2", 0], "template": "a picture in the style of sks",
            "placeholder": "sks"}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "in autumn, golden leaves", "clip": ["1", 1]}},
    }


def load(comfy_in_process, family: str) -> dict:
    graph = semantic_graph(family)
    outputs = ("1", "5", "6", "7")
    if family == "sd15":
        graph["8"] = {"class_type": "StyleSmithOsasisStyleLoader", "inputs": {"style_name": DEFAULT_OSASIS_STYLES["sd15"]}}
        outputs += ("8",)
    out = comfy_in_process.run(graph, outputs_of=outputs)
    loaded = {"model": out["1"][0], "clip": out["1"][1], "z_content": out["5"][0], "z_style": out["6"][0],
              "prompt": out["7"][0]}
    if family == "sd15":
        loaded.update(style=out["8"][0], reference=out["8"][1], info=out["8"][2])
    return loaded


@pytest.fixture(scope="module")
def sd15(comfy_in_process):
    return load(comfy_in_process, "sd15")


def unit_latent(seed: int = 0, size: int = 8) -> dict:
    """A LATENT that is unit-scale in model space (a real image's is; the random tiny VAE's is not)."""
    return {"samples": torch.randn(1, 4, size, size, generator=torch.Generator().manual_seed(seed)) / SD15_LATENT_SCALE}


def node(comfy_in_process, name: str):
    execute = comfy_in_process.node_classes[f"StyleSmithOsasis{name}"].execute

    def run(**inputs):
        with torch.inference_mode():   # as ComfyUI's executor runs nodes
            return execute(**inputs).result
    return run


def encode(host, loaded, latent, iterations=3, t0=0.5, steps=50):
    return node(host, "StructuralEncode")(model=loaded["model"], latent=latent, z_content=loaded["z_content"], t0=t0,
                                          steps=steps, scheduler="normal", inversion_iterations=iterations)[0]


def decode(host, loaded, structure, **inputs):
    settings = dict(model=loaded["model"], structure=structure, z_content=loaded["z_content"], mix=0.5,
                    spn_weight=0.1, lora_strength=1.0)
    settings.update(inputs)
    return node(host, "Decode")(**settings)[0]["samples"]


def relative_error(a, b):
    return ((a - b).norm() / b.norm()).item()


def test_structural_encode_is_the_exact_inverse_of_the_decode(comfy_in_process, sd15):
    latent = unit_latent()
    exact = encode(comfy_in_process, sd15, latent, iterations=3)
    plain = encode(comfy_in_process, sd15, latent, iterations=0)
    assert len(exact.sigmas) == 26 and exact.t0 == 0.5 and exact.family == "sd15"
    assert relative_error(exact.code, latent["samples"]) > 0.5, "x_t0 must be a noisy code, not the input"
    exact_error = relative_error(decode(comfy_in_process, sd15, exact), latent["samples"])
    plain_error = relative_error(decode(comfy_in_process, sd15, plain), latent["samples"])
    assert exact_error <= 1e-3, exact_error
    assert plain_error > 10 * exact_error, (plain_error, exact_error)


def test_untrained_style_with_the_spn_off_decodes_to_the_reconstruction(comfy_in_process, sd15):
    structure = encode(comfy_in_process, sd15, unit_latent(1), steps=20)
    base = decode(comfy_in_process, sd15, structure)
    untrained = copy.copy(sd15["style"])
    untrained.lora = {k: torch.zeros_like(v) if k.endswith("lora_up.weight") else v for k, v in untrained.lora.items()}
    assert any(p.abs().max() > 0 for p in untrained.spn.conv_out.parameters()), "the SPN must be live for this test"
    off = decode(comfy_in_process, sd15, structure, osasis_style=untrained, spn_weight=0.0)
    assert relative_error(off, base) <= 1e-5
    assert relative_error(decode(comfy_in_process, sd15, structure, osasis_style=untrained), base) > 1e-4, \
        "the trained SPN must change the output"
    styled = decode(comfy_in_process, sd15, structure, osasis_style=sd15["style"])
    assert relative_error(styled, base) > 1e-3, "the trained style file must change the output"
    assert torch.isfinite(styled).all()


def test_loader_shows_the_reference_and_the_training_schedule(sd15):
    assert sd15["reference"].shape == (2, 128, 128, 3) and 0 <= sd15["reference"].min() < sd15["reference"].max() <= 1
    assert "t0=0.5" in sd15["info"] and "10 normal steps" in sd15["info"]
    assert "semantic code: style encoder stylesmith-tiny" in sd15["info"]


def test_decode_warns_when_the_structure_was_not_made_on_the_styles_training_schedule(comfy_in_process, sd15, caplog):
    """The tiny style was trained at t0 0.5 of 10 normal steps: a code made on 20 steps (or at t0 0.4) is decoded
    through noise levels the style never learned, and the user is told how to match; on its own schedule, silence."""
    execute = comfy_in_process.node_classes["StyleSmithOsasisDecode"].execute
    settings = dict(model=sd15["model"], z_content=sd15["z_content"], mix=0.0, spn_weight=0.1, lora_strength=1.0,
                    osasis_style=sd15["style"])
    for made, warned in (((0.5, 10), False), ((0.5, 20), True), ((0.4, 10), True)):
        caplog.clear()
        with torch.inference_mode():
            out = execute(structure=encode(comfy_in_process, sd15, unit_latent(3), t0=made[0], steps=made[1]),
                          **settings)
        said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "OSASIS Decode" in r.getMessage()]
        assert bool(said) == warned, (made, said)
        assert bool(out.ui and out.ui["text"]) == warned, (made, out.ui)
        if warned:
            assert f"made at t0={made[0]:g} of {made[1]} normal steps" in said[0]
            assert "trained at t0=0.5 of 10 normal steps" in said[0] and "steps=10" in said[0]


def test_loader_says_when_the_style_holds_no_reference_pictures(comfy_in_process, tiny_models_dir):
    import folder_paths
    from safetensors.torch import save_file
    from core.formats.safe_files import read_safetensors
    tensors, metadata = read_safetensors(tiny_models_dir / "osasis" / DEFAULT_OSASIS_STYLES["sd15"], "test file")
    folder = Path(folder_paths.get_folder_paths("osasis")[0])
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v for k, v in tensors.items() if not k.startswith("reference.")},
              str(folder / "no-pictures.safetensors"), metadata)
    _, reference, info = comfy_in_process.node_classes["StyleSmithOsasisStyleLoader"].execute(
        style_name="no-pictures.safetensors").result
    assert "this file holds no reference pictures, so the reference output is a black 64x64 image" in info
    assert reference.shape == (1, 64, 64, 3) and reference.max() == 0


def test_mixing_and_prompt_steer_the_decode_and_inputs_stay_untouched(comfy_in_process, sd15):
    structure = encode(comfy_in_process, sd15, unit_latent(2), steps=20)
    code_before = structure.code.clone()
    content_only = decode(comfy_in_process, sd15, structure)
    mixes = {mix: decode(comfy_in_process, sd15, structure, z_style=sd15["z_style"], mix=mix)
             for mix in (0.0, 0.25, 0.5, 1.0)}
    assert torch.equal(mixes[0.0], content_only), "mix 0 is z_content everywhere"
    assert relative_error(mixes[0.25], mixes[0.0]) > 1e-4 and relative_error(mixes[0.25], mixes[1.0]) > 1e-4
    # Past 0.5 only the middle block's share grows: the tiny SD1.5 needs its middle block to show it.
    assert relative_error(mixes[0.5], mixes[1.0]) > 1e-4, "mix 0.5 and mix 1 decode the same"
    prompted = decode(comfy_in_process, sd15, structure, prompt=sd15["prompt"])
    assert relative_error(prompted, content_only) > 1e-4
    assert torch.equal(structure.code, code_before)
    assert sd15["z_content"][0][0].shape == (1, 77, 768), "the prompt is concatenated to a copy, not in place"


@pytest.fixture(scope="module")
def two_level_sd15(comfy_in_process):
    """The SD1.5 MODEL with 2 resolution levels and a middle block, loaded by CheckpointLoaderSimple from the
    in-process host's own models/checkpoints folder."""
    path = comfy_in_process.base_dir / "models" / "checkpoints" / "stylesmith-two-level-sd15.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    build_checkpoint(path, "sd15", size="two-level", text_encoder_dtype="fp8")
    try:
        out = comfy_in_process.run({"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": path.name}}},
                                   outputs_of=("1",))
        yield out["1"][0]
    finally:
        path.unlink(missing_ok=True)


def test_mixing_keeps_the_level_order_on_a_unet_with_two_levels_and_a_middle_block(comfy_in_process, two_level_sd15):
    """With z_content all 0 and z_style all 1, the context each cross-attention layer gets is its style weight:
    weight(level) = clamp(mix * (levels + 1) - level, 0, 1), level 0 the full latent resolution, level `levels`
    the middle block."""
    model, size, levels = two_level_sd15, 16, 2
    diffusion_model = model.model.diffusion_model
    assert len(model.model.model_config.unet_config["channel_mult"]) == levels
    zeros, ones = [[torch.zeros(1, 77, 768), {}]], [[torch.ones(1, 77, 768), {}]]
    loaded = {"model": model, "z_content": zeros}
    structure = encode(comfy_in_process, loaded, unit_latent(4, size), steps=10)
    level_of_tokens = {(size >> level) ** 2: level for level in range(levels)}   # each level halves height and width

    def expected_level(name: str, tokens: int) -> int:
        return levels if name.startswith("middle_block.") else level_of_tokens[tokens]

    seen = []
    handles = []
    for name, module in diffusion_model.named_modules():
        if name.endswith(".attn2"):
            def record(module, args, kwargs, name=name):
                context = kwargs["context"].float()
                seen.append((name, args[0].shape[1], context.mean().item(), context.min().item(), context.max().item()))
            handles.append(module.register_forward_pre_hook(record, with_kwargs=True))
    assert len(handles) == 7, "1 + 1 input, 1 middle and 2 + 2 output attention layers"
    try:
        for mix in (0.25, 0.5, 0.9):
            seen.clear()
            decode(comfy_in_process, loaded, structure, z_style=ones, mix=mix)
            expected = [min(1.0, max(0.0, mix * (levels + 1) - level)) for level in range(levels + 1)]
            assert seen, "the decode must run the UNet"
            by_level = {}
            for name, tokens, mean, low, high in seen:
                level = expected_level(name, tokens)
                assert low == pytest.approx(high, abs=1e-6), f"{name}: the blend must be uniform"
                assert mean == pytest.approx(expected[level], abs=1e-3), \
                    f"mix {mix}: {name} ({tokens} tokens, level {level}) got style share {mean}, expected {expected}"
                by_level.setdefault(level, set()).add(round(mean, 4))
            kinds = {(name.split(".")[0], expected_level(name, tokens)) for name, tokens, *_ in seen}
            assert kinds == {("input_blocks", 0), ("input_blocks", 1), ("middle_block", 2), ("output_blocks", 0),
                             ("output_blocks", 1)}, kinds
            assert all(min(by_level[finer]) >= max(by_level[coarser])
                       for finer in range(levels + 1) for coarser in range(finer + 1, levels + 1)), \
                f"mix {mix}: a coarser level got more style than a finer one: {by_level}"
    finally:
        for handle in handles:
            handle.remove()


def test_structural_encode_stops_on_comfyuis_interrupt(comfy_in_process, sd15):
    """Cancel during step 3 of 25: the inversion finishes at most that step, whatever the host's progress throttling
    (from 0.9.2 ComfyUI calls progress hooks at most every 100 ms, so the test counts UNet evaluations instead)."""
    import comfy.model_management
    evaluations_per_step, interrupt_at = 1 + 3, 2 * 4 + 1     # plain guess + 3 fixed-point iterations; step 3
    evaluations = []

    def counting_unet(apply_model, args):
        evaluations.append(len(evaluations) + 1)
        if len(evaluations) == interrupt_at:
            comfy.model_management.interrupt_current_processing(True)
        return apply_model(args["input"], args["timestep"], **args["c"])

    model = sd15["model"].clone()
    model.set_model_unet_function_wrapper(counting_unet)
    try:
        with pytest.raises(comfy.model_management.InterruptProcessingException):
            encode(comfy_in_process, dict(sd15, model=model), unit_latent(), steps=50)
    finally:
        comfy.model_management.interrupt_current_processing(False)
    assert interrupt_at <= len(evaluations) < interrupt_at + evaluations_per_step, \
        "the inversion must stop at the end of the step it was cancelled in, not run its 25 steps"


def test_bad_latents_conditioning_and_missing_encoders_name_the_fix(comfy_in_process, sd15):
    with pytest.raises(ValueError, match="not a multiple of 8 .* multiple of 64 pixels"):
        encode(comfy_in_process, sd15, {"samples": torch.zeros(1, 4, 12, 12)})
    with pytest.raises(ValueError, match="4-channel image latents: encode the image with this checkpoint's VAE"):
        encode(comfy_in_process, sd15, {"samples": torch.zeros(1, 16, 8, 8)})
    structure = encode(comfy_in_process, sd15, unit_latent(), steps=10)
    wide = [[torch.zeros(1, 77, 2048), {}]]
    with pytest.raises(ValueError, match="z_style is 2048 wide but this MODEL attends to 768-wide contexts"):
        decode(comfy_in_process, sd15, structure, z_style=wide)
    short = [[torch.zeros(1, 154, 768), {}]]
    with pytest.raises(ValueError, match="z_content has 77 tokens of width 768 but z_style has 154"):
        decode(comfy_in_process, sd15, structure, z_style=short)
    with pytest.raises(ValueError, match="needs a style_encoder .* or a clip_vision"):
        node(comfy_in_process, "SemanticEncode")(image=torch.rand(1, 8, 8, 3), clip=sd15["clip"],
                                                 template="a picture", placeholder="sks")


def test_t0_outside_the_schedule_and_missing_or_corrupt_style_files_are_refused(comfy_in_process):
    graph = api_workflows()["osasis-stylise-sd15"]
    for t0 in (0.0, 1.5):
        bad = copy.deepcopy(graph)
        bad["8"]["inputs"]["t0"] = t0
        with pytest.raises(PromptValidationError, match="t0"):
            comfy_in_process.run(bad)
    missing = copy.deepcopy(graph)
    missing["9"]["inputs"]["style_name"] = "no-such-style.safetensors"
    with pytest.raises(PromptValidationError, match="no-such-style.safetensors is not in any models/osasis folder"):
        comfy_in_process.run(missing)
    folder = comfy_in_process.base_dir / "models" / "osasis"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "corrupt.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    corrupt = copy.deepcopy(graph)
    corrupt["9"]["inputs"]["style_name"] = "corrupt.safetensors"
    with pytest.raises(NodeExecutionError, match="truncated or corrupt"):
        comfy_in_process.run(corrupt)


@pytest.mark.sdxl
def test_sdxl_codes_are_exact_and_families_are_not_mixed(comfy_in_process, sd15):
    sdxl = load(comfy_in_process, "sdxl")
    latent = {"samples": torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3)) / 0.13025}
    structure = encode(comfy_in_process, sdxl, latent, steps=20)
    assert relative_error(decode(comfy_in_process, sdxl, structure), latent["samples"]) <= 1e-3
    with pytest.raises(ValueError, match="The OSASIS style is for SD1.x but the MODEL is SDXL"):
        decode(comfy_in_process, sdxl, structure, osasis_style=sd15["style"])
    with pytest.raises(ValueError, match="The structural code is for SDXL but the MODEL is SD1.x"):
        decode(comfy_in_process, sd15, structure)
