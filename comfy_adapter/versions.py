"""Every difference between ComfyUI versions that StyleSmith or its harness meets, in one place.

Each function names the ComfyUI version that changed the behaviour it hides. Tested hosts: 0.33.0 (pinned),
0.3.75 and 0.3.64. The V3 node API's version is chosen in comfy_adapter/v3.py. Nothing here imports
ComfyUI at module level: the log parser runs in processes that never load it.
"""
import argparse
import inspect
import re
from pathlib import Path

# Since 0.23 every log line starts with a coloured level tag ("\x1b[32m[INFO]\x1b[0m "), in log files too.
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_LEVEL_TAG = re.compile(r"^\[(DEBUG|DETAIL|INFO|WARNING|ERROR|CRITICAL)\] ")
_IMPORT_TIME = re.compile(r"^\s*([0-9.]+) seconds( \(IMPORT FAILED\))?: (.+)$")


def host_version(comfyui_dir: Path) -> tuple[int, ...]:
    """The version a ComfyUI folder declares in comfyui_version.py, e.g. (0, 3, 75)."""
    text = (Path(comfyui_dir) / "comfyui_version.py").read_text()
    match = re.search(r"__version__\s*=\s*[\"']([0-9.]+)[\"']", text)
    if match is None:
        raise ValueError(f"{comfyui_dir}/comfyui_version.py declares no __version__: is it a ComfyUI folder?")
    return tuple(int(part) for part in match.group(1).split("."))


def log_message(line: str) -> str:
    """A ComfyUI log line without the level tag and colours that 0.23 added."""
    return _LEVEL_TAG.sub("", _ANSI.sub("", line))


def import_time_entry(line: str) -> tuple[str, float, bool] | None:
    """(pack path, seconds, imported ok) from a line of ComfyUI's 'Import times for custom nodes' block."""
    match = _IMPORT_TIME.match(log_message(line))
    if match is None:
        return None
    return match.group(3).strip(), float(match.group(1)), match.group(2) is None


def prompt_executor(execution_module, server):
    """A PromptExecutor with the classic cache and no LRU or RAM-pressure caching.

    Before 0.3.68 it took `cache_size`; from 0.3.68 `cache_args`; from 0.23 `cache_args` also needs "ram_inactive".
    """
    parameters = inspect.signature(execution_module.PromptExecutor.__init__).parameters
    if "cache_args" not in parameters:
        return execution_module.PromptExecutor(server, cache_type=execution_module.CacheType.CLASSIC, cache_size=0)
    return execution_module.PromptExecutor(server, cache_type=execution_module.CacheType.CLASSIC,
                                           cache_args={"lru": 0, "ram": 0, "ram_inactive": 0})


def cached_outputs(executor, node_id: str) -> list:
    """A node's outputs (one list per output) from the executor's cache after a run.

    Before 0.3.68 the cache held the output lists; from 0.3.68 a CacheEntry with `.outputs`. From 0.17 `get` is a
    coroutine and `get_local` the synchronous read.
    """
    cache = executor.caches.outputs
    entry = cache.get_local(node_id) if hasattr(cache, "get_local") else cache.get(node_id)
    return entry.outputs if hasattr(entry, "outputs") else entry


def checkpoint_state_dict(model, clip_state_dict: dict, vae_state_dict: dict) -> dict:
    """model.state_dict_for_saving with the UNet's own weights; from 0.33 the UNet state dict is its first parameter."""
    if "unet_state_dict" in inspect.signature(model.state_dict_for_saving).parameters:
        return model.state_dict_for_saving(model.diffusion_model.state_dict(), clip_state_dict=clip_state_dict,
                                           vae_state_dict=vae_state_dict)
    return model.state_dict_for_saving(clip_state_dict=clip_state_dict, vae_state_dict=vae_state_dict)


def extra_requirements(version: tuple[int, ...]) -> dict[str, list[str]]:
    """What a host imports beyond its requirements.txt (installed without torch, which the venv owns), by how pip
    must install it: {"with_deps": [...], "no_deps": [...]}."""
    extras = {"with_deps": ["requests"], "no_deps": []}   # 0.3.75 imports requests without listing it
    if version >= (0, 20):
        # From 0.20 comfy/sd.py imports torchaudio whenever a model loads. No torchaudio is built for torch 2.14.1;
        # 2.11.0 (the newest built for a torch 2.11 ABI) imports beside it and serves, installed without its torch pin.
        extras["no_deps"].append("torchaudio==2.11.0")
    return extras


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Print what a ComfyUI host needs beyond its requirements.txt, "
                                                 "one requirement per line (used by scripts/setup.sh).")
    parser.add_argument("comfyui", type=Path, help="the ComfyUI folder")
    parser.add_argument("--kind", choices=["with_deps", "no_deps"], required=True,
                        help="with_deps: install normally; no_deps: install with pip --no-deps")
    args = parser.parse_args(argv)
    for requirement in extra_requirements(host_version(args.comfyui))[args.kind]:
        print(requirement)


if __name__ == "__main__":
    main()
