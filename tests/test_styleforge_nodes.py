"""StyleForge's loader and prompt nodes on the real host: triggers, components, LoRAs made elsewhere, a LoRA for
another family, a corrupt file."""
import json

import pytest

from devkit.in_process import NodeExecutionError
from devkit.workflows import api_workflows

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"), pytest.mark.hosts]


def loader_graph(lora_name: str, checkpoint: str = "stylesmith-tiny-sd15.safetensors", template="a boat, {all}"):
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
        "2": {"class_type": "StyleSmithStyleForgeLoraLoader", "inputs": {"model": ["1", 0], "clip": ["1", 1],
              "lora_name": lora_name, "strength_model": 1.0, "strength_clip": 1.0}},
        "3": {"class_type": "StyleSmithStyleForgePrompt", "inputs": {"components": ["2", 3], "template": template}},
    }


def test_loader_outputs_triggers_and_prompt_composes_components(comfy_in_process):
    out = comfy_in_process.run(loader_graph("stylesmith-tiny-multistyleforge-sd15.safetensors",
                                            template="a knight in {characters}, in a forest in {backgrounds}"),
                               outputs_of=("1", "2", "3"))
    model, clip = out["1"][0], out["1"][1]
    patched_model, patched_clip, trigger, components = out["2"]
    assert trigger == "zwx style, qwv style"
    assert [c.name for c in components] == ["characters", "backgrounds"]
    assert out["3"][0] == "a knight in zwx style, in a forest in qwv style"
    assert patched_model is not model and patched_clip is not clip
    assert not model.patches and len(patched_model.patches) > 0, "the input MODEL must stay unpatched"


def test_prompt_template_with_an_unknown_component_names_the_known_ones(comfy_in_process):
    with pytest.raises(NodeExecutionError, match=r"\['all', 'style'\]"):
        comfy_in_process.run(loader_graph("stylesmith-tiny-styleforge-sd15.safetensors", template="{characters} boat"),
                             outputs_of=("3",))


def test_loras_made_elsewhere_give_their_triggers_or_a_clear_fallback(comfy_in_process, tiny_models_dir):
    from safetensors.torch import load_file, save_file
    tensors = load_file(str(tiny_models_dir / "loras" / "stylesmith-tiny-styleforge-sd15.safetensors"))
    folder = comfy_in_process.base_dir / "models" / "loras"
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "kohya-made.safetensors"),
              metadata={"ss_tag_frequency": json.dumps({"10_img": {"inkwash": 9, "1girl": 3}})})
    save_file(tensors, str(folder / "modelspec-made.safetensors"), metadata={"modelspec.trigger_phrase": "abc style, xyz"})
    save_file(tensors, str(folder / "bare.safetensors"))
    for name, expected in (("kohya-made", "inkwash"), ("modelspec-made", "abc style, xyz"), ("bare", "")):
        out = comfy_in_process.run(loader_graph(f"{name}.safetensors"), outputs_of=("2",))
        assert out["2"][2] == expected


def test_a_lora_without_a_family_is_loaded_only_where_its_layers_fit(comfy_in_process, tiny_models_dir):
    """No family in the metadata or in the cross-attention width (no attn2 to_k pair): the fit is read off the
    MODEL's key map, so a Flux-named LoRA or one with other widths is refused before ComfyUI skips or misapplies it."""
    import torch
    from safetensors.torch import load_file, save_file
    ours = load_file(str(tiny_models_dir / "loras" / "stylesmith-tiny-styleforge-sd15.safetensors"))
    tensors = {k: v for k, v in ours.items() if not ("attn2" in k and "to_k" in k)}
    folder = comfy_in_process.base_dir / "models" / "loras"
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "familyless.safetensors"))
    widened = dict(tensors)
    down = next(k for k in sorted(tensors) if k.startswith("lora_unet_") and k.endswith("to_q.lora_down.weight"))
    widened[down] = torch.zeros(tensors[down].shape[0], tensors[down].shape[1] + 8)
    save_file(widened, str(folder / "other-widths.safetensors"))
    save_file({"lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight": torch.zeros(4, 64),
               "lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight": torch.zeros(192, 4)},
              str(folder / "flux-made.safetensors"))
    patched = comfy_in_process.run(loader_graph("familyless.safetensors"), outputs_of=("2",))["2"][0]
    assert len(patched.patches) > 0
    layer = down.removesuffix(".lora_down.weight")
    for name, problem in (("flux-made", "none of its 1 layers is a layer of this model (ComfyUI would load nothing; "
                                        "its first is lora_unet_double_blocks_0_img_attn_qkv)"),
                          ("other-widths", f"its layers do not have this model's widths ({layer}: the LoRA's layer is "
                                           f"{tensors[layer + '.lora_up.weight'].shape[0]} x "
                                           f"{tensors[down].shape[1] + 8}, the model's")):
        with pytest.raises(NodeExecutionError) as excinfo:
            comfy_in_process.run(loader_graph(f"{name}.safetensors"), outputs_of=("2",))
        assert f"{name}.safetensors does not fit this SD1.x MODEL: {problem}" in str(excinfo.value)
        assert "pick a LoRA made for SD1.x" in str(excinfo.value)


@pytest.mark.sdxl
def test_lora_for_another_family_names_both(comfy_in_process):
    with pytest.raises(NodeExecutionError) as excinfo:
        comfy_in_process.run(loader_graph("stylesmith-tiny-styleforge-sd15.safetensors",
                                          checkpoint="stylesmith-tiny-sdxl.safetensors"), outputs_of=("2",))
    assert "is a LoRA for SD1.x but the MODEL is SDXL. Load an SD1.x checkpoint" in str(excinfo.value)


def test_corrupt_lora_is_refused_and_the_server_serves_on(comfy_server):
    folder = comfy_server.base_dir / "models" / "loras"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "corrupt.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    bad = json.loads(json.dumps(api_workflows()["styleforge-sd15"]))
    bad["2"]["inputs"]["lora_name"] = "corrupt.safetensors"
    result = comfy_server.run(bad)
    assert result.status == "error" and "truncated or corrupt" in result.error["exception_message"]
    assert comfy_server.run(api_workflows()["styleforge-sd15"]).status == "success"
