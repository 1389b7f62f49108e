"""StyleSmith's ComfyUI nodes: thin glue that validates inputs, calls core/, returns.

Each method's nodes live in their own module; NODE_LIST is what the extension registers.
"""
NODE_LIST: tuple = ()
