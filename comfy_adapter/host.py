"""Find and configure the real ComfyUI in a standalone process: trainers, benchmarks and tests load models through it.

Order matters: ComfyUI reads its CLI args when `comfy.model_management` is first imported, and
`folder_paths` reads `--base-directory` when it is first imported. The host is found at
`--comfyui`, else $COMFYUI_PATH, else the ComfyUI this pack is installed in
(`ComfyUI/custom_nodes/ComfyUI-StyleSmith`), else the one scripts/setup.sh recorded.
"""
import os
import sys
from pathlib import Path

from .core_modules import errors

PACK_ROOT = Path(__file__).resolve().parent.parent
_configured = False


def is_comfyui(folder: Path) -> bool:
    return (folder / "main.py").is_file() and (folder / "comfy").is_dir()


def find_comfyui(explicit: Path | None = None) -> Path | None:
    """The ComfyUI folder (see the module docstring for the order), or None when there is none."""
    candidates = [explicit, os.environ.get("COMFYUI_PATH"), PACK_ROOT.parent.parent]
    recorded = Path(os.environ.get("STYLESMITH_HOME", PACK_ROOT / ".stylesmith")) / "comfyui-path"
    if recorded.is_file():
        candidates.append(recorded.read_text().strip())
    return next((Path(c).resolve() for c in candidates if c and is_comfyui(Path(c))), None)


def locate_comfyui(explicit: Path | None = None) -> Path:
    found = find_comfyui(explicit)
    if found is not None:
        return found
    raise errors.UserFileNotFoundError("ComfyUI not found: pass --comfyui /path/to/ComfyUI, set COMFYUI_PATH, install this pack "
                            "in ComfyUI/custom_nodes, or run scripts/setup.sh.")


def put_comfyui_on_path(explicit: Path | None = None) -> Path:
    """ComfyUI goes first on sys.path: its top-level `nodes`, `utils`, ... must win over this repo's folders."""
    root = str(locate_comfyui(explicit))
    if root in sys.path:
        sys.path.remove(root)
    sys.path.insert(0, root)
    return Path(root)


# ComfyUI's own options that set the dtype it holds each part of a checkpoint in. "auto" leaves the UNet and VAE
# to ComfyUI (fp16 or bf16 on a GPU, fp32 on the CPU) and keeps the text encoder fp32, as the trainers always did;
# fp16 leaves the VAE alone, since the SD1.x and SDXL VAEs overflow in fp16.
WEIGHT_DTYPE_OPTIONS = {
    "auto": ("fp32_text_enc",),
    "fp32": ("fp32_unet", "fp32_vae", "fp32_text_enc"),
    "bf16": ("bf16_unet", "bf16_vae", "bf16_text_enc"),
    "fp16": ("fp16_unet", "fp16_text_enc"),
}


def import_comfy(base_directory: Path | None = None, cpu: bool = True, comfyui: Path | None = None,
                 weights: str = "auto"):
    """Configure ComfyUI (CPU unless told otherwise; `weights` a key of WEIGHT_DTYPE_OPTIONS) and return
    comfy.model_management.

    Only the first call configures: ComfyUI reads its args once per process.
    """
    global _configured
    if "comfy.model_management" not in sys.modules:
        put_comfyui_on_path(comfyui)
    import comfy.options  # noqa: F401  (args are not parsed from sys.argv unless enabled)
    from comfy.cli_args import args
    if not _configured and "comfy.model_management" not in sys.modules:
        args.cpu = cpu
        for option in WEIGHT_DTYPE_OPTIONS[weights]:
            setattr(args, option, True)
        args.disable_api_nodes = True
        if base_directory is not None:
            args.base_directory = str(base_directory)
        _configured = True
    elif base_directory is not None and args.base_directory != str(base_directory):
        raise RuntimeError(f"ComfyUI is already configured in this process with base directory "
                           f"{args.base_directory}; configure it with {base_directory} before anything imports comfy.")
    import comfy.model_management
    return comfy.model_management
