"""The pack's core/ modules that the adapter uses, imported under the name this process knows them by.

Inside ComfyUI the pack is one package (custom_nodes/ComfyUI-StyleSmith), so core is the sibling `..core`;
trainers, benchmarks and tests run from the repository root, where `core` is a top-level package.
"""
if "." in __package__:
    from ..core import errors, families
    from ..core.formats import checkpoint_family, safe_files, text_encoder_options
    from ..core.osasis import mixing as osasis_mixing
    from ..core.osasis import semantics as osasis_semantics
    from ..core.sampling import ddim, gradient_checkpointing
    from ..core.style_tokens import injection as token_injection
else:
    from core import errors, families
    from core.formats import checkpoint_family, safe_files, text_encoder_options
    from core.osasis import mixing as osasis_mixing
    from core.osasis import semantics as osasis_semantics
    from core.sampling import ddim, gradient_checkpointing
    from core.style_tokens import injection as token_injection

__all__ = ["checkpoint_family", "ddim", "errors", "families", "gradient_checkpointing", "osasis_mixing", "osasis_semantics",
           "safe_files", "text_encoder_options", "token_injection"]
