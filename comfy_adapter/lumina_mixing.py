"""OSASIS content/style mixing by block depth on Lumina 2's NextDiT (Z-Image); core/osasis/mixing.py defines it.

NextDiT runs the caption through its own embedder and context refiner before the joint layers, and places the
image tokens' RoPE positions after the caption, so the z_style text stream must come through the model's forward
itself. The model function wrapper therefore doubles the batch: the first half carries z_content, the second
z_style (every other per-image input repeated). After each of the joint layers, ComfyUI's "double_block"
post-patch hands over both halves' image tokens; both halves get their blend with that layer's style share, so
the image stream stays shared while each caption stream carries on as its own. The first half's prediction is the
result. z_content and z_style have equal token counts (OSASIS Decode refuses otherwise), so the halves line up.

The patch point came with a ComfyUI release after 0.3.75 (0.33.0 has it; 0.3.75 and 0.3.64 do not). A host that
never calls the patch would silently decode z_content alone, so every forward pass checks that each layer called
it and otherwise stops with an error naming the versions.
"""
import torch

from .core_modules import osasis_mixing

PATCH_POINT_MISSING = ("this ComfyUI's Lumina 2 / Z-Image model calls no \"double_block\" patches after its layers, "
                       "which mixing z_style on Z-Image needs: update ComfyUI (0.33.0 has them; 0.3.75 and 0.3.64 do "
                       "not), or set mix to 0 or disconnect z_style.")


def supports_lumina_mixing(model) -> bool:
    """Whether the MODEL's transformer is a NextDiT: caption embedder, context refiner and joint layers."""
    net = model.model.diffusion_model
    return all(hasattr(net, name) for name in ("cap_embedder", "context_refiner", "layers"))


def doubled(value, batch: int):
    """A per-image input repeated for the z_style half; anything else (lists, numbers, options) as it is."""
    if isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape[0] == batch:
        return torch.cat([value, value])
    return value


def with_lumina_mixing(model, style_context: torch.Tensor, mix: float):
    """A clone of MODEL whose joint layers blend the z_content and z_style halves' image tokens by depth.

    When every layer's style share is 1 (mix 1) the z_content half never reaches the image, so the clone decodes
    with z_style alone, in one half-size batch: the same numbers as a decode with z_style as the code, bit for bit (a
    doubled batch rounds differently on the CPU, by about 1e-8).
    """
    weights = osasis_mixing.block_style_weights(mix, len(model.model.diffusion_model.layers))
    previous = model.model_options.get("model_function_wrapper")
    calls = []   # the layers that called the patch during one forward pass

    def run(apply_model, args):
        if previous is not None:   # another node's wrapper runs inside ours
            return previous(apply_model, args)
        return apply_model(args["input"], args["timestep"], **args["c"])

    def patch(args):
        index = args["block_index"]
        calls.append(index)
        content, style = args["img"].chunk(2)
        image = osasis_mixing.blend(content, style, weights[index])
        return {"img": torch.cat([image, image])}

    def style_only(apply_model, args):
        context = args["c"]["c_crossattn"]
        style = style_context.to(context).expand(context.shape[0], -1, -1)
        return run(apply_model, {**args, "c": {**args["c"], "c_crossattn": style}})

    def mixed(apply_model, args):
        batch = args["input"].shape[0]
        content = args["c"]["c_crossattn"]
        c = {name: doubled(value, batch) for name, value in args["c"].items()}
        c["c_crossattn"] = torch.cat([content, style_context.to(content).expand(batch, -1, -1)])
        calls.clear()
        x, timestep = doubled(args["input"], batch), doubled(args["timestep"], batch)
        out = run(apply_model, {**args, "input": x, "timestep": timestep, "c": c,
                                "cond_or_uncond": args["cond_or_uncond"] * 2})
        if sorted(set(calls)) != list(range(len(weights))):
            raise RuntimeError(f"OSASIS Decode: {PATCH_POINT_MISSING}")
        return out[:batch]

    model = model.clone()
    if all(weight == 1.0 for weight in weights):
        model.set_model_unet_function_wrapper(style_only)
    else:
        model.set_model_unet_function_wrapper(mixed)
        model.set_model_patch(patch, "double_block")
    return model
