"""A bundled workflow without one of its styles: the same API graph with the style, LoRA or SPN taken out.

The workflow test runs each of these beside the bundled graph and requires every saved image to change, so a node
that ignores its style (or a tiny model that cannot show it) fails there. Each ablation takes out one thing and keeps
the rest of the graph, so ComfyUI's cache reruns only the nodes downstream of the change:

- style tokens: Encode Prompt With Style becomes a plain CLIPTextEncode of the same text, the placeholder left as an
  ordinary word, so the injected style embedding is the only difference;
- StyleForge LoRA: the loader at strength 0 for the model and the text encoder (its components still feed the prompt);
- OSASIS LoRA and SPN: OSASIS Decode at lora_strength 0, or at spn_weight 0 (z_style is covered by the mixing
  sweep, whose images must differ from each other).
"""
import copy


def _plain_text_encode(node: dict) -> dict:
    return {"class_type": "CLIPTextEncode", "inputs": {"text": node["inputs"]["text"], "clip": node["inputs"]["clip"]}}


def _with_inputs(**values):
    def ablate(node: dict) -> dict:
        return dict(node, inputs=dict(node["inputs"], **values))
    return ablate


# name -> (the node type it changes, how the node looks without it)
ABLATIONS = {
    "style tokens": ("StyleSmithEncodePromptWithStyle", _plain_text_encode),
    "StyleForge LoRA": ("StyleSmithStyleForgeLoraLoader", _with_inputs(strength_model=0.0, strength_clip=0.0)),
    "OSASIS LoRA": ("StyleSmithOsasisDecode", _with_inputs(lora_strength=0.0)),
    "OSASIS SPN": ("StyleSmithOsasisDecode", _with_inputs(spn_weight=0.0)),
}


def ablations(api: dict) -> dict[str, dict]:
    """{ablation name: the graph without it} for every ablation whose node type the graph holds."""
    variants = {}
    for name, (class_type, ablate) in ABLATIONS.items():
        if any(node["class_type"] == class_type for node in api.values()):
            variants[name] = {node_id: ablate(node) if node["class_type"] == class_type else copy.deepcopy(node)
                              for node_id, node in api.items()}
    return variants
