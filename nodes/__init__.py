"""StyleSmith's ComfyUI nodes: thin glue that validates inputs, calls core/, returns.

Each method's nodes live in their own module; the extension registers them all.
"""
from ..comfy_adapter.v3 import ComfyExtension

from . import osasis, style_tokens, styleforge

NODE_LIST = (*style_tokens.NODES, *styleforge.NODES, *osasis.NODES)


class StyleSmithExtension(ComfyExtension):
    async def get_node_list(self):
        return list(NODE_LIST)
