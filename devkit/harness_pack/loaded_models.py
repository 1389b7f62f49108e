"""GET /stylesmith-harness/loaded-models: the models ComfyUI holds loaded, as sorted "ClassName bytes" strings.
POST /stylesmith-harness/release-free-memory: hands the C allocator's free pages back to the system (glibc's
malloc_trim), so the process's resident size that follows counts memory in use, not memory freed and kept for reuse.

ComfyUI's own API (/system_stats) tells memory, not which models are loaded; the busy-server test
(tests/test_busy_server.py) compares this list before and after a queue with cancellations. Registered only in a
server process (the in-process harness has no PromptServer).
"""
import ctypes
import ctypes.util
import gc
import sys

import comfy.model_management


def loaded_models() -> list[str]:
    gc.collect()                          # models held only by a reference cycle are let go first
    found = []
    for loaded in comfy.model_management.current_loaded_models:
        patcher = loaded.model            # None once ComfyUI has let the model go (a weak reference on newer hosts)
        if patcher is not None:
            found.append(f"{type(patcher.model).__name__} {patcher.model_size()}")
    return sorted(found)


def release_free_memory() -> bool:
    """gc, then glibc's malloc_trim(0); False where the C library has no malloc_trim (not glibc)."""
    gc.collect()
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    trim = getattr(libc, "malloc_trim", None)
    if trim is None:
        return False
    trim(0)
    return True


def register_route() -> None:
    server = sys.modules.get("server")       # ComfyUI's main.py has made its PromptServer before loading packs
    instance = getattr(getattr(server, "PromptServer", None), "instance", None)
    if instance is None:
        return
    from aiohttp import web

    @instance.routes.get("/stylesmith-harness/loaded-models")
    async def get_loaded_models(request):
        return web.json_response(loaded_models())

    @instance.routes.post("/stylesmith-harness/release-free-memory")
    async def post_release_free_memory(request):
        return web.json_response({"trimmed": release_free_memory()})
