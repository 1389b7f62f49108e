"""ComfyUI entry point of StyleSmith (V3 node API).

ComfyUI imports this package under its folder name; everything below uses relative imports,
and heavy libraries (open_clip, transformers) are imported only when a node first runs.
"""
from comfy_api.latest import ComfyExtension

from .nodes import NODE_LIST


class StyleSmithExtension(ComfyExtension):
    async def get_node_list(self):
        return list(NODE_LIST)


async def comfy_entrypoint() -> StyleSmithExtension:
    return StyleSmithExtension()
