"""ComfyUI's V3 node API, pinned to one version where the host offers it.

ComfyUI's maintainers advise a pinned `comfy_api.v0_0_x` over `latest`, which follows the newest host. Every
host StyleSmith is tested on (0.3.64, 0.3.75, 0.33.0) ships `comfy_api.v0_0_2`; a host with only `latest`
still loads the pack.
"""
try:
    from comfy_api.v0_0_2 import ComfyExtension, io
except ImportError:  # hosts before v0_0_2 was published
    from comfy_api.latest import ComfyExtension, io

__all__ = ["ComfyExtension", "io"]
