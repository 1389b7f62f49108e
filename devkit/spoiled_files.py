"""Weight files spoiled on purpose, for the bad-input tests."""


def rewritten(source, target, tensor_edit=None, metadata_edit=None) -> None:
    """Copy a safetensors file with one tensor or metadata entry spoiled."""
    from safetensors.torch import load_file, save_file
    from core.formats.safe_files import read_safetensors
    _, metadata = read_safetensors(source, "test file")
    tensors = load_file(str(source))
    if tensor_edit:
        prefix = tensor_edit
        name = sorted(k for k in tensors if k.startswith(prefix) and tensors[k].is_floating_point())[0]
        tensors[name] = tensors[name].clone()
        tensors[name].view(-1)[0] = float("nan")
    save_file(tensors, str(target), metadata=dict(metadata, **(metadata_edit or {})))
