"""The seam between StyleSmith and ComfyUI: the only shipped code that imports ComfyUI.

    v3.py            the V3 node API (io, ComfyExtension), pinned to a version where the host has one
    versions.py      every difference between ComfyUI versions, each with the version that made it
    families.py      which registered family (core/families.py) a ComfyUI MODEL or CLIP is
    bridge.py        what nodes do with ComfyUI objects: folders, tokens, LoRA patching, sampling, progress
    style_prompt.py  a prompt tokenised with style vectors in the placeholder's place (CLIP splice or `embedding:`)
    diffusion.py     a checkpoint loaded by ComfyUI with what trainers need (noise, conditioning, previews)
    split_files.py   a family's split files (diffusion model, text encoder, VAE) through ComfyUI's loaders, for trainers
    kohya_names.py   kohya LoRA names from ComfyUI's own LoRA key map
    host.py          finding and configuring ComfyUI in a standalone process (trainers, benchmarks, tests)
    core_modules.py  core/ under the name this process gives it (inside ComfyUI, or from the repository root)

core/ never imports this package; nodes/ and trainers/ reach ComfyUI only through it. A new model family is
one entry in core/families.py plus the code here that reads it off ComfyUI's objects.
"""
