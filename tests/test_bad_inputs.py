"""The bad-input sweep: every node and trainer, each bad input a row; each error names the problem and the fix.

Two tables: graphs queued on the real server (after them the server serves a good prompt) and node calls
on the in-process host; the trainer command lines are in test_trainer_mistakes.py. Odd but valid
images (RGBA, gray, 1 px, very large) are accepted, not refused.
"""
import copy
import json
import pickle
import shutil

import pytest
import torch

from devkit.tiny_loras import DEFAULT_LORAS
from devkit.tiny_models import TINY_CHECKPOINTS
from devkit.tiny_osasis_styles import DEFAULT_OSASIS_STYLES
from devkit.spoiled_files import rewritten
from devkit.tiny_style_encoders import DEFAULT_STYLE_ENCODERS
from devkit.workflows import api_workflows

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"), pytest.mark.hosts]
SD15_ENCODER, SD15_LORA = DEFAULT_STYLE_ENCODERS["sd15"], next(iter(DEFAULT_LORAS))


def edit(workflow: str, node: str, **inputs):
    def make():
        api = copy.deepcopy(api_workflows()[workflow])
        api[node]["inputs"].update(inputs)
        return api
    return make


def with_concat():
    """style-tokens-sd15 with its prompt passed through Concat Style (the one float node no bundled workflow uses)."""
    api = copy.deepcopy(api_workflows()["style-tokens-sd15"])
    api["11"] = {"class_type": "StyleSmithConcatStyle",
                 "inputs": {"conditioning": ["6", 0], "strength": 1.0, "style_tokens": ["4", 0], "clip": ["1", 1]}}
    api["8"]["inputs"]["positive"] = ["11", 0]
    return api


# Where each StyleSmith node with a FLOAT input runs in a graph: node type -> (graph maker, node id).
FLOAT_NODES = {"StyleSmithStyleForgeLoraLoader": (edit("styleforge-sd15", "2"), "2"),
               "StyleSmithConcatStyle": (with_concat, "11"),
               "StyleSmithOsasisStructuralEncode": (edit("osasis-stylise-sd15", "8"), "8"),
               "StyleSmithOsasisDecode": (edit("osasis-stylise-sd15", "10"), "10")}


def float_inputs(object_info) -> list[tuple[str, str]]:
    ours = {n: i for n, i in object_info.items() if i["python_module"].endswith("ComfyUI-StyleSmith")}
    return sorted((node, name) for node, info in ours.items() for section in ("required", "optional")
                  for name, spec in info["input"].get(section, {}).items() if spec[0] == "FLOAT")


def with_value(node_type: str, name: str, value: float):
    make, node_id = FLOAT_NODES[node_type]

    def graph():
        api = make()
        api[node_id]["inputs"][name] = value
        return api
    return graph


def tiny_content():
    """The stylise workflow on its content image scaled down to 8 x 8 pixels."""
    api = copy.deepcopy(api_workflows()["osasis-stylise-sd15"])
    api["13"] = {"class_type": "ImageScale", "inputs": {"image": ["3", 0], "upscale_method": "nearest-exact",
                                                        "width": 8, "height": 8, "crop": "disabled"}}
    api["5"]["inputs"]["pixels"] = ["13", 0]
    return api


SERVER_CASES = {
    "pickled style encoder": (edit("style-tokens-sd15", "2", encoder_name="pickled.pt"),
                              "refuses to load it because loading a pickle can run code. Save the style encoder as .safetensors"),
    "truncated style encoder": (edit("style-tokens-sd15", "2", encoder_name="truncated.safetensors"),
                                "truncated or corrupt. Download or export it again"),
    "missing style encoder": (edit("style-tokens-sd15", "2", encoder_name="gone.safetensors"),
                              "gone.safetensors is not in any models/style_encoders folder"),
    "missing StyleForge LoRA": (edit("styleforge-sd15", "2", lora_name="gone.safetensors"),
                                "gone.safetensors is not in any models/loras folder"),
    "LoRA file that is a style encoder": (edit("styleforge-sd15", "2", lora_name="not-a-lora.safetensors"),
                                          "holds no LoRA weights (no lora_down/lora_up tensors): pick a LoRA file"),
    "unknown component in a template": (edit("styleforge-sd15", "3", template="a cat, {nope}"),
                                        "The template names ['nope'], but this LoRA's components are"),
    "LoRA strength out of range": (edit("styleforge-sd15", "2", strength_model=50.0), "bigger than max of 10.0"),
    "zero sampler steps": (edit("styleforge-sd15", "7", steps=0), "smaller than min of 1"),
    "t0 of zero": (edit("osasis-stylise-sd15", "8", t0=0.0), "Value 0.0 smaller than min of 0.01"),
    "t0 above one": (edit("osasis-stylise-sd15", "8", t0=1.5), "Value 1.5 bigger than max of 1.0"),
    "zero inversion schedule steps": (edit("osasis-stylise-sd15", "8", steps=0), "Value 0 smaller than min of 1"),
    "mix out of range": (edit("osasis-stylise-sd15", "10", mix=2.0), "Value 2.0 bigger than max of 1.0"),
    "missing OSASIS style": (edit("osasis-stylise-sd15", "9", style_name="gone.safetensors"),
                             "gone.safetensors is not in any models/osasis folder"),
    "truncated OSASIS style": (edit("osasis-stylise-sd15", "9", style_name="truncated.safetensors"),
                               "truncated or corrupt"),
    "LoRA given as an OSASIS style": (edit("osasis-stylise-sd15", "9", style_name="a-lora.safetensors"),
                                      "is not an OSASIS style (styleforge_lora). OSASIS styles come from"),
    "content image of 8x8 pixels (a 1x1 latent)": (tiny_content, "is 1x1, not a multiple of 8 (the UNet halves it "
                                                                  "three times): scale or crop"),
    "LoRA text-encoder strength -inf": (with_value("StyleSmithStyleForgeLoraLoader", "strength_clip", float("-inf")),
                                        "Value -inf smaller than min of -10.0"),
    "Concat strength inf": (with_value("StyleSmithConcatStyle", "strength", float("inf")),
                            "Value inf bigger than max of 10.0"),
    "SPN weight inf": (with_value("StyleSmithOsasisDecode", "spn_weight", float("inf")),
                       "Value inf bigger than max of 2.0"),
    "LoRA holding NaN weights": (edit("styleforge-sd15", "2", lora_name="nan.safetensors"),
                                 "nan.safetensors: tensor lora_unet_"),
    "OSASIS style holding NaN weights": (edit("osasis-stylise-sd15", "9", style_name="nan.safetensors"),
                                         "nan.safetensors: tensor spn."),
    "style encoder holding NaN weights": (edit("style-tokens-sd15", "2", encoder_name="nan.safetensors"),
                                          "nan.safetensors: tensor heads."),
    "style encoder with malformed JSON metadata": (edit("style-tokens-sd15", "2", encoder_name="bad-json.safetensors"),
                                                   "bad-json.safetensors: the style encoder's metadata cannot be read"),
    "OSASIS style with malformed JSON metadata": (edit("osasis-stylise-sd15", "9", style_name="bad-json.safetensors"),
                                                  "bad-json.safetensors: the OSASIS style's metadata cannot be read"),
    "LoRA with malformed trigger metadata": (edit("styleforge-sd15", "2", lora_name="bad-json.safetensors"),
                                             "bad-json.safetensors: the LoRA's metadata cannot be read"),
}


@pytest.fixture(scope="module")
def bad_files_on_server(comfy_server, tiny_models_dir):
    models = comfy_server.base_dir / "models"
    for folder in ("style_encoders", "loras", "osasis"):
        (models / folder).mkdir(parents=True, exist_ok=True)
    encoder = (tiny_models_dir / "style_encoders" / SD15_ENCODER).read_bytes()
    (models / "style_encoders" / "pickled.pt").write_bytes(pickle.dumps({"weights": [1, 2]}))
    (models / "style_encoders" / "truncated.safetensors").write_bytes(encoder[: len(encoder) // 2])
    (models / "loras" / "not-a-lora.safetensors").write_bytes(encoder)
    style = (tiny_models_dir / "osasis" / DEFAULT_OSASIS_STYLES["sd15"]).read_bytes()
    (models / "osasis" / "truncated.safetensors").write_bytes(style[:1000])
    shutil.copyfile(tiny_models_dir / "loras" / SD15_LORA, models / "osasis" / "a-lora.safetensors")
    sources = {"loras": (tiny_models_dir / "loras" / SD15_LORA, "lora_unet_", "stylesmith.components"),
               "osasis": (tiny_models_dir / "osasis" / DEFAULT_OSASIS_STYLES["sd15"], "spn.", "stylesmith.spn_config"),
               "style_encoders": (tiny_models_dir / "style_encoders" / SD15_ENCODER, "heads.", "stylesmith.heads")}
    for folder, (source, prefix, json_key) in sources.items():
        rewritten(source, models / folder / "nan.safetensors", tensor_edit=prefix)
        rewritten(source, models / folder / "bad-json.safetensors", metadata_edit={json_key: "{not json"})
    return comfy_server


@pytest.mark.server
@pytest.mark.parametrize("case", sorted(SERVER_CASES))
def test_server_names_the_problem_and_stays_up(case, bad_files_on_server):
    make, message = SERVER_CASES[case]
    result = bad_files_on_server.run(make())
    assert result.status == "error", f"{case}: the prompt did not fail"
    shown = json.dumps(result.error).replace('\\"', '"')
    assert message in shown, result.error
    if "exception_type" in result.error:     # the UI shows the class name alone, not the pack's module path
        assert result.error["exception_type"].isidentifier(), result.error["exception_type"]
    if case.startswith("missing"):   # the same words on every host (from 0.8 the host checks file lists itself)
        assert "Put it there and refresh." in shown and "Value not in list" not in shown, result.error
    assert bad_files_on_server.process.poll() is None, "the server died"


@pytest.mark.server
def test_every_float_input_of_every_node_refuses_nan(bad_files_on_server, object_info):
    """Every FLOAT input /object_info lists for a StyleSmith node, sent NaN through the API (ComfyUI's JSON reader
    accepts it, and NaN passes min/max checks). A node with a new FLOAT input fails here until FLOAT_NODES says
    where it runs."""
    inputs = float_inputs(object_info)
    assert len(inputs) >= 7 and {node for node, _ in inputs} <= set(FLOAT_NODES), inputs
    for node, name in inputs:
        result = bad_files_on_server.run(with_value(node, name, float("nan"))())
        assert result.status == "error", f"{node}.{name} = NaN ran"
        assert f"{name} is nan: give a finite number" in json.dumps(result.error), result.error


@pytest.mark.server
def test_server_serves_good_prompts_after_the_bad_ones(bad_files_on_server):
    for name in ("style-tokens-sd15", "osasis-stylise-sd15"):
        result = bad_files_on_server.run(api_workflows()[name])
        assert result.status == "success" and result.images, name


# ---- node calls on the in-process host --------------------------------------------------------------
@pytest.fixture(scope="module")
def sd15(comfy_in_process):
    out = comfy_in_process.run({
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": TINY_CHECKPOINTS["sd15"]}},
        "2": {"class_type": "StyleSmithStyleEncoderLoader", "inputs": {"encoder_name": SD15_ENCODER}},
        "3": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 2}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"text": "a house", "clip": ["1", 1]}},
    }, outputs_of=("1", "2", "3", "4"))
    return {"model": out["1"][0], "clip": out["1"][1], "encoder": out["2"][0], "latent": out["3"][0],
            "cond": out["4"][0]}


def call(host, node: str, **inputs):
    with torch.inference_mode():
        return host.node_classes[f"StyleSmith{node}"].execute(**inputs).result


def structure(host, s):
    return call(host, "OsasisStructuralEncode", model=s["model"], latent=s["latent"], z_content=s["cond"], t0=0.5,
                steps=4, scheduler="normal", inversion_iterations=0)[0]


def decode(host, s, **inputs):
    return call(host, "OsasisDecode", model=s["model"], structure=structure(host, s), z_content=s["cond"], mix=0.5,
                spn_weight=0.1, lora_strength=1.0, **inputs)


def one_inf(tensor: torch.Tensor) -> torch.Tensor:
    tensor.view(-1)[tensor.numel() // 2] = float("inf")
    return tensor


def save_embedding(host, s, name: str):
    return call(host, "SaveStyleEmbedding", style_tokens=tokens(host, s, torch.rand(1, 16, 16, 3))[0], name=name)


def tokens(host, s, image):
    return call(host, "ImageToStyleTokens", style_encoder=s["encoder"], image=image, batch_mode="per image")


NODE_CASES = {
    "NaN image": (lambda h, s: tokens(h, s, torch.full((1, 16, 16, 3), float("nan"))),
                  "Image to Style Tokens: the image holds 768 NaN or infinite pixel value(s)"),
    "image with one inf pixel to Image to Style Tokens": (lambda h, s: tokens(h, s, one_inf(torch.rand(1, 16, 16, 3))),
                                                         "Image to Style Tokens: the image holds 1 NaN or infinite"),
    "empty image batch": (lambda h, s: tokens(h, s, torch.zeros(0, 16, 16, 3)), "The IMAGE batch is empty"),
    "five-channel image": (lambda h, s: tokens(h, s, torch.zeros(1, 16, 16, 5)),
                           "An IMAGE with 5 channels cannot be read as a picture"),
    "concat without a style": (lambda h, s: call(h, "ConcatStyle", conditioning=s["cond"], strength=1.0),
                               "exactly one style"),
    "embedding name escaping the folder": (lambda h, s: call(h, "SaveStyleEmbedding", style_tokens=tokens(
        h, s, torch.rand(1, 16, 16, 3))[0], name="../escape"), "not a usable embedding name"),
    "semantic encode without an encoder": (lambda h, s: call(
        h, "OsasisSemanticEncode", image=torch.rand(1, 16, 16, 3), clip=s["clip"], template="a", placeholder="sks"),
        "needs a style_encoder (Load Style Encoder) or a clip_vision"),
    "latent not a multiple of 8": (lambda h, s: structure(h, dict(s, latent={"samples": torch.zeros(1, 4, 12, 12)})),
                                   "not a multiple of 8"),
    "latent of another model (16 channels)": (lambda h, s: structure(h, dict(s, latent={
        "samples": torch.zeros(1, 16, 8, 8)})), "works on 4-channel image latents: encode the image with this"),
    "SDXL-wide z_style on SD1.5": (lambda h, s: decode(h, s, z_style=[[torch.zeros(1, 77, 2048), {}]]),
                                   "z_style is 2048 wide but this MODEL attends to 768-wide contexts"),
    "z_content batch of 3 for 2 latents": (lambda h, s: decode(h, dict(s, cond=[[torch.zeros(3, 77, 768), {}]])),
                                           "z_content holds 3 codes but the latent batch has 2"),
    "z_style token count unlike z_content": (lambda h, s: decode(h, s, z_style=[[torch.zeros(1, 154, 768), {}]]),
                                             "z_content has 77 tokens of width 768 but z_style has 154"),
    "latent with one inf value": (lambda h, s: structure(h, dict(s, latent={"samples": one_inf(torch.zeros(2, 4, 8, 8))})),
                                  "The latent holds NaN or infinite values: the image it was encoded from"),
    "image with one inf pixel to Semantic Encode": (lambda h, s: call(
        h, "OsasisSemanticEncode", image=one_inf(torch.rand(1, 16, 16, 3)), clip=s["clip"], style_encoder=s["encoder"],
        template="a", placeholder="sks"), "OSASIS Semantic Encode: the image holds 1 NaN or infinite"),
    "style conditioning holding NaN (output check)": (lambda h, s: call(
        h, "ConcatStyle", conditioning=s["cond"], strength=1.0,
        style_conditioning=[[torch.full((1, 77, 768), float("nan")), {}]]),
        "Concat Style to Conditioning produced NaN or infinite values. The likely cause: conditioning or"),
    "embedding name with a space": (lambda h, s: save_embedding(h, s, "my style"), "is not a usable embedding name"),
    "embedding name of 300 characters": (lambda h, s: save_embedding(h, s, "x" * 300),
                                         "(300 characters) is not a usable embedding name"),
    "embedding name with a NUL": (lambda h, s: save_embedding(h, s, "a\x00b"), "is not a usable embedding name"),
    "embedding name Windows reserves": (lambda h, s: save_embedding(h, s, "nul.style"), "Windows reserves NUL"),
    "embedding name already taken": (lambda h, s: [save_embedding(h, s, "stylesmith_taken") for _ in range(2)],
                                     "stylesmith_taken already exist(s) in"),
}


@pytest.mark.parametrize("case", sorted(NODE_CASES))
def test_node_names_the_problem(case, comfy_in_process, sd15):
    run, message = NODE_CASES[case]
    with pytest.raises(ValueError) as raised:
        run(comfy_in_process, sd15)
    assert message in str(raised.value)


ODD_IMAGES = {"RGBA": torch.rand(1, 20, 30, 4), "grayscale": torch.rand(1, 30, 20, 1), "1 px": torch.rand(1, 1, 1, 3),
              "very large": torch.rand(1, 2048, 1536, 3)}


@pytest.mark.parametrize("kind", sorted(ODD_IMAGES))
def test_odd_images_are_read_not_refused(kind, comfy_in_process, sd15):
    style = tokens(comfy_in_process, sd15, ODD_IMAGES[kind])[0]
    assert style.tokens["clip_l"].shape == (1, 8, 768) and torch.isfinite(style.tokens["clip_l"]).all()
    (z_sem, _), = call(comfy_in_process, "OsasisSemanticEncode", image=ODD_IMAGES[kind], clip=sd15["clip"],
                       style_encoder=sd15["encoder"], template="a picture in the style of sks", placeholder="sks")[0]
    assert z_sem.shape == (1, 77, 768)
