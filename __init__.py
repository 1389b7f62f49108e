"""ComfyUI entry point of StyleSmith (V3 node API).

Importing this file does nothing but define `comfy_entrypoint`: ComfyUI calls it once it is fully
configured, and only then are the nodes (and through them ComfyUI's own modules) imported.
Heavy libraries (open_clip, transformers) load later still, when a node first runs.
"""


async def comfy_entrypoint():
    from .nodes import StyleSmithExtension
    return StyleSmithExtension()
