"""Import the real ComfyUI in this process, configured for CPU and exact numbers.

Order matters: ComfyUI reads its CLI args when `comfy.model_management` is first
imported, and `folder_paths` reads `--base-directory` when it is first imported.
"""
from pathlib import Path

from . import paths

_configured = False


def import_comfy(base_directory: Path | None = None, fp32_text_encoder: bool = True, cpu: bool = True):
    """Put the host on sys.path, configure it (CPU unless told otherwise; fp32 text encoder) and
    return comfy.model_management. Only the first call configures; ComfyUI reads its args once."""
    global _configured
    paths.put_comfyui_on_path()
    import comfy.options  # noqa: F401  (args are not parsed from sys.argv unless enabled)
    from comfy.cli_args import args
    if not _configured:
        args.cpu = cpu
        args.fp32_text_enc = fp32_text_encoder
        args.disable_api_nodes = True
        if base_directory is not None:
            args.base_directory = str(base_directory)
        _configured = True
    elif base_directory is not None and args.base_directory != str(base_directory):
        raise RuntimeError(f"ComfyUI is already configured in this process with base directory "
                           f"{args.base_directory}; configure it with {base_directory} before anything imports comfy.")
    import comfy.model_management
    return comfy.model_management
