"""OSASIS content/style mixing by block depth on a transformer (core/osasis/mixing.py defines the mixing; this runs
it): on a Flux-class transformer (Flux.2 Klein) through ComfyUI's "dit" block-replace patches, on Lumina 2's NextDiT
(Z-Image) through comfy_adapter/lumina_mixing.py.

On Flux, each patched block runs ComfyUI's own block twice, once on the z_content text stream (the one ComfyUI
carries) and once on the z_style stream (carried here between the blocks of one forward pass), and hands ComfyUI the
blend of the two image outputs. ComfyUI's blocks add to their inputs in place, so the first run gets a copy.
"""
import torch

from .core_modules import osasis_mixing
from .lumina_mixing import supports_lumina_mixing, with_lumina_mixing


def supports_flux_mixing(model) -> bool:
    """Whether the MODEL's transformer has Flux's double- and single-stream blocks and text projection."""
    net = model.model.diffusion_model
    return all(hasattr(net, name) for name in ("double_blocks", "single_blocks", "txt_in"))


def supports_block_mixing(model) -> bool:
    """Whether the MODEL's transformer is one whose blocks this module can mix (Flux or Lumina 2)."""
    return supports_flux_mixing(model) or supports_lumina_mixing(model)


def with_block_mixing(model, style_context: torch.Tensor, mix: float):
    """A clone of MODEL whose blocks blend the z_content and z_style streams' image outputs by depth."""
    if supports_flux_mixing(model):
        return with_flux_mixing(model, style_context, mix)
    return with_lumina_mixing(model, style_context, mix)


def with_flux_mixing(model, style_context: torch.Tensor, mix: float):
    """Mixing on Flux: each patched block runs once per text stream."""
    net = model.model.diffusion_model
    doubles, singles = len(net.double_blocks), len(net.single_blocks)
    weights = osasis_mixing.block_style_weights(mix, doubles + singles)
    stream = {}   # the z_style text stream, between the blocks of one forward pass

    def projected_style(txt: torch.Tensor) -> torch.Tensor:
        """z_style as the blocks see text: through the model's own text norm and projection."""
        style = style_context.to(device=txt.device, dtype=txt.dtype).expand(txt.shape[0], -1, -1)
        return net.txt_in(style if net.txt_norm is None else net.txt_norm(style))

    def double(index: int):
        def patch(args, extra):
            if index == 0:
                stream["txt"] = projected_style(args["txt"])
            content = extra["original_block"]({**args, "img": args["img"].clone()})
            style = extra["original_block"]({**args, "txt": stream["txt"]})
            stream["txt"] = style["txt"]
            return {"img": osasis_mixing.blend(content["img"], style["img"], weights[index]), "txt": content["txt"]}
        return patch

    def single(index: int):
        def patch(args, extra):
            n = stream["txt"].shape[1]
            style_in = torch.cat([stream["txt"], args["img"][:, n:]], dim=1)
            content = extra["original_block"](args)["img"]
            style = extra["original_block"]({**args, "img": style_in})["img"]
            stream["txt"] = style[:, :n]
            image = osasis_mixing.blend(content[:, n:], style[:, n:], weights[doubles + index])
            return {"img": torch.cat([content[:, :n], image], dim=1)}
        return patch

    model = model.clone()
    for i in range(doubles):
        model.set_model_patch_replace(double(i), "dit", "double_block", i)
    for i in range(singles):
        model.set_model_patch_replace(single(i), "dit", "single_block", i)
    return model
