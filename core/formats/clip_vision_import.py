"""Start a style-encoder backbone from CLIP-vision weights ComfyUI users already have.

ComfyUI's models/clip_vision files (OpenAI ViT-L/14, the open_clip ViT-H/14 and ViT-bigG/14 shipped
for IP-Adapter) are in Hugging Face `CLIPVisionModel(WithProjection)` layout. This maps them onto
an open_clip VisionTransformer and derives the open_clip config from the tensor shapes:

    vision_model.embeddings.class_embedding            -> class_embedding
    vision_model.embeddings.patch_embedding.weight     -> conv1.weight
    vision_model.embeddings.position_embedding.weight  -> positional_embedding
    vision_model.pre_layrnorm / post_layernorm         -> ln_pre / ln_post
    encoder.layers.i.self_attn.{q,k,v}_proj            -> transformer.resblocks.i.attn.in_proj_* (q;k;v stacked)
    encoder.layers.i.self_attn.out_proj                -> transformer.resblocks.i.attn.out_proj
    encoder.layers.i.layer_norm{1,2}                   -> transformer.resblocks.i.ln_{1,2}
    encoder.layers.i.mlp.fc{1,2}                       -> transformer.resblocks.i.mlp.c_{fc,proj}
    visual_projection.weight (E, W)                    -> proj (W, E)

Head count and activation are not stored in the weights. As ComfyUI's own clip_vision configs:
16 heads, and quick-GELU only for the 24-layer ViT-L (OpenAI); pass them to override.
"""
import math
import re

import torch

from .safe_files import read_safetensors

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)   # OpenAI CLIP's normalisation
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
LAYER = re.compile(r"^encoder\.layers\.(\d+)\.(.+)$")
DIRECT = {
    "embeddings.class_embedding": "class_embedding",
    "embeddings.patch_embedding.weight": "conv1.weight",
    "embeddings.position_embedding.weight": "positional_embedding",
    "pre_layrnorm.weight": "ln_pre.weight", "pre_layrnorm.bias": "ln_pre.bias",
    "post_layernorm.weight": "ln_post.weight", "post_layernorm.bias": "ln_post.bias",
}
IN_LAYER = {"self_attn.out_proj": "attn.out_proj", "layer_norm1": "ln_1", "layer_norm2": "ln_2",
            "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj"}


def _strip_prefix(tensors: dict) -> dict:
    out = {}
    for key, value in tensors.items():
        if key.startswith("vision_model."):
            out[key[len("vision_model."):]] = value
        elif key == "visual_projection.weight":
            out[key] = value
    if "embeddings.class_embedding" not in out:
        raise ValueError("These weights are not a CLIP vision model in Hugging Face layout "
                         "(no vision_model.embeddings.class_embedding); use a file from models/clip_vision.")
    return out


def open_clip_config_from_clip_vision(tensors: dict, heads: int = 16, quick_gelu: bool | None = None) -> dict:
    sd = _strip_prefix(tensors)
    width = sd["embeddings.class_embedding"].shape[0]
    patch = sd["embeddings.patch_embedding.weight"].shape[-1]
    grid = math.isqrt(sd["embeddings.position_embedding.weight"].shape[0] - 1)
    layers = 1 + max(int(m.group(1)) for k in sd if (m := LAYER.match(k)))
    mlp_ratio = sd["encoder.layers.0.mlp.fc1.weight"].shape[0] / width
    embed_dim = sd["visual_projection.weight"].shape[0] if "visual_projection.weight" in sd else width
    if quick_gelu is None:
        quick_gelu = layers == 24
    return {"embed_dim": embed_dim, "quick_gelu": quick_gelu,
            "vision_cfg": {"image_size": grid * patch, "layers": layers, "width": width,
                           "head_width": width // heads, "patch_size": patch, "mlp_ratio": mlp_ratio},
            # open_clip always builds a text tower; a tiny one keeps it cheap. It is never used.
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 1, "layers": 1}}


def architecture_name(config: dict) -> str:
    v = config["vision_cfg"]
    act = "-quickgelu" if config["quick_gelu"] else ""
    return f"clip-vision-w{v['width']}-l{v['layers']}-p{v['patch_size']}-s{v['image_size']}{act}"


def open_clip_visual_state(tensors: dict) -> dict[str, torch.Tensor]:
    """HF CLIP-vision tensors -> open_clip VisionTransformer state dict (with `proj` when present)."""
    sd = _strip_prefix(tensors)
    out = {new: sd[old] for old, new in DIRECT.items()}
    qkv = {}
    for key, value in sd.items():
        m = LAYER.match(key)
        if not m:
            continue
        index, rest = m.groups()
        prefix = f"transformer.resblocks.{index}."
        module, param = rest.rsplit(".", 1)
        if module in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"):
            qkv.setdefault((prefix, param), {})[module[-6]] = value
        else:
            out[prefix + IN_LAYER[module] + "." + param] = value
    for (prefix, param), parts in qkv.items():
        out[f"{prefix}attn.in_proj_{param}"] = torch.cat([parts["q"], parts["k"], parts["v"]])
    if "visual_projection.weight" in sd:
        out["proj"] = sd["visual_projection.weight"].t().contiguous()
    return out


def style_encoder_from_clip_vision(tensors: dict, family: str, text_encoder_widths: dict[str, int],
                                   n_tokens: int = 8, preprocess=None, heads: int = 16, quick_gelu: bool | None = None):
    """A StyleEncoder whose backbone holds the CLIP-vision weights; fresh heads for `text_encoder_widths`."""
    from ..data.image_preprocess import Preprocess
    from ..style_tokens.encoder import StyleEncoder, StyleEncoderConfig
    config = open_clip_config_from_clip_vision(tensors, heads=heads, quick_gelu=quick_gelu)
    if preprocess is None:
        preprocess = Preprocess(size=config["vision_cfg"]["image_size"], mean=CLIP_MEAN, std=CLIP_STD)
    encoder = StyleEncoder(StyleEncoderConfig(
        family=family, architecture=architecture_name(config), backbone_config=config,
        heads=dict(text_encoder_widths), n_tokens=n_tokens, preprocess=preprocess,
        training={"stage": "init-from-clip-vision"}))
    state = open_clip_visual_state(tensors)
    state.pop("proj", None)   # the style encoder reads the pooled feature before CLIP's projection
    encoder.backbone.load_state_dict(state, strict=True)
    return encoder


def style_encoder_from_clip_vision_file(path, family: str, text_encoder_widths: dict[str, int], n_tokens: int = 8):
    """style_encoder_from_clip_vision on a models/clip_vision .safetensors file, read without unpickling."""
    tensors, _ = read_safetensors(path, "CLIP vision model")
    return style_encoder_from_clip_vision(tensors, family, text_encoder_widths, n_tokens)
