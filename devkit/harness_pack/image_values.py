"""A test node that makes the IMAGEs a foreign node's bug would: scaled, shifted, with one NaN or inf pixel.

No stock node turns an IMAGE out of [0, 1] or non-finite, yet other packs' nodes do; the server tests of the image
rule (tests/test_image_range.py) build such inputs with this node inside ordinary graphs.
"""
import torch


class HarnessImageValues:
    """image * scale + offset, then one pixel spoiled (NaN or inf), then optionally clamped to [0, 1]."""

    CATEGORY = "StyleSmith harness"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "apply"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",),
                             "scale": ("FLOAT", {"default": 1.0, "min": -1000.0, "max": 1000.0, "step": 0.01}),
                             "offset": ("FLOAT", {"default": 0.0, "min": -1000.0, "max": 1000.0, "step": 0.01}),
                             "spoil": (["none", "nan", "inf"],),
                             "clamp": ("BOOLEAN", {"default": False})}}

    def apply(self, image, scale, offset, spoil, clamp):
        out = image * scale + offset
        if spoil != "none":
            out.view(-1)[out.numel() // 2] = float(spoil)
        return (out.clamp(0, 1) if clamp else out,)
