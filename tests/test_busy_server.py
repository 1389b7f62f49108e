"""A busy server: three clients queue 14 mixed prompts (every bundled workflow but the heavy Z-Image ones, each
prompt its own seed and texts), 2 of them are cancelled mid-run through /interrupt, then the 12 others run again one
at a time.

Nothing fails, the two runs of each prompt give the same pixels, the server's resident memory grows < 5 % over the
whole test, and ComfyUI holds the same models loaded after the busy queue and after the quiet run as after the
warm-up (the harness pack's GET /stylesmith-harness/loaded-models). Every loop is bounded in count and time; the
server listens on 127.0.0.1 only.
"""
import copy
import json
import threading
import time

import numpy as np
import pytest

from comfy_adapter import versions

from devkit import paths
from devkit.soak import variant
from devkit.workflows import HEAVY_FAMILIES, api_workflows, unsupported_workflow, workflow_family

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"), pytest.mark.server, pytest.mark.hosts]
PROMPTS, CLIENTS, CANCELLED = 14, 3, (4, 9)
# Schedules kept short so the test stays within minutes on CPU (the OSASIS workflows ship with 20 steps and 3
# inversion iterations); a cancelled prompt samples SLOW_STEPS, so the interrupt lands mid-run.
QUICK, SLOW_STEPS = {"steps": 4, "inversion_iterations": 1}, 400
DEADLINE_S = 1500


def workflows() -> list[str]:
    """Every bundled workflow whose family this host serves (the host lane's older hosts lack the DiT families),
    but for the heavy families'."""
    host = versions.host_version(paths.comfyui_dir())
    return [name for name in sorted(api_workflows())
            if unsupported_workflow(name, host) is None and workflow_family(name) not in HEAVY_FAMILIES]


def prompt(index: int) -> dict:
    """Workflow index % count with its own seed and texts (devkit.soak.variant), quick or, if cancelled, slow."""
    names = workflows()
    api = copy.deepcopy(variant(api_workflows()[names[index % len(names)]], index))
    for node in api.values():
        for key, value in QUICK.items():
            if isinstance(node["inputs"].get(key), int):
                node["inputs"][key] = SLOW_STEPS if index in CANCELLED and key == "steps" else value
    return api


def finished(server, prompt_id: str, deadline: float) -> dict:
    entry = server.wait(prompt_id, timeout=max(1.0, deadline - time.monotonic()))
    return {"status": entry["status"]["status_str"], "outputs": entry["outputs"],
            "events": {event: data for event, data in entry["status"].get("messages", [])}}


def pixels(server, outputs: dict) -> list:
    return [server.fetch_image(ref) for node in sorted(outputs) for ref in outputs[node].get("images", [])]


def resident_bytes(server) -> int:
    """The server's resident size once the C allocator has handed back its free pages: memory in use, so a
    leak shows and memory freed but kept for reuse by malloc does not."""
    assert json.loads(server.post_json("/stylesmith-harness/release-free-memory", {}))["trimmed"]
    return server.rss_bytes()


def loaded_models(server, settle: dict) -> list:
    """The models ComfyUI holds loaded after `settle` ran: which are held depends on the last graph (a model whose
    loader output left ComfyUI's cache is let go), so each phase ends with the same graph before the list is read."""
    assert server.run(settle, timeout=600).status == "success"
    return server.get_json("/stylesmith-harness/loaded-models")


def queue_busy(server) -> dict:
    """Three client threads queue the PROMPTS prompts; each thread's own prompts in order. Returns index -> prompt id."""
    ids, errors = {}, []

    def client(first: int):
        try:
            for index in range(first, PROMPTS, CLIENTS):
                prompt_id, invalid = server.queue(prompt(index))
                assert invalid is None, invalid
                ids[index] = prompt_id
        except Exception as e:       # surfaced in the main thread
            errors.append(e)

    threads = [threading.Thread(target=client, args=(first,)) for first in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors and len(ids) == PROMPTS, errors
    return ids


def interrupt_when_running(server, targets: set, deadline: float) -> set:
    """POST /interrupt {prompt_id} for each target once it has run a moment; returns the ids interrupted."""
    interrupted, seen_at = set(), {}
    while targets - interrupted and time.monotonic() < deadline:
        queue = server.get_json("/queue")
        running = {item[1] for item in queue["queue_running"]}
        for prompt_id in (running & targets) - interrupted:
            seen_at.setdefault(prompt_id, time.monotonic())
            if time.monotonic() - seen_at[prompt_id] > 0.5:
                server.post_json("/interrupt", {"prompt_id": prompt_id})
                interrupted.add(prompt_id)
        if not running and not queue["queue_pending"]:
            break
        time.sleep(0.05)
    return interrupted


def test_busy_queue_with_cancellations_then_quiet_run(comfy_server):
    deadline = time.monotonic() + DEADLINE_S
    warm_up = range(PROMPTS, PROMPTS + len(workflows()))
    for index in warm_up:                                   # every workflow once, models loaded
        assert comfy_server.run(prompt(index), timeout=600).status == "success", index
    settle = prompt(warm_up[-1])
    models_after_warm_up, rss_after_warm_up = loaded_models(comfy_server, settle), resident_bytes(comfy_server)

    ids = queue_busy(comfy_server)
    cancel = {ids[i] for i in CANCELLED}
    interrupted = interrupt_when_running(comfy_server, cancel, deadline)
    busy = {index: finished(comfy_server, ids[index], deadline) for index in range(PROMPTS)}
    assert interrupted == cancel, f"{len(cancel - interrupted)} cancel targets never ran"
    for index, result in busy.items():
        if index in CANCELLED:
            assert result["status"] == "error" and "execution_interrupted" in result["events"], (index, result)
        else:
            assert result["status"] == "success", (index, result["events"].get("execution_error"))
    models_after_busy = loaded_models(comfy_server, settle)

    for index in sorted(set(range(PROMPTS)) - set(CANCELLED)):     # the same prompts, one at a time
        quiet = finished(comfy_server, comfy_server.queue(prompt(index))[0], deadline)
        assert quiet["status"] == "success", (index, quiet["events"].get("execution_error"))
        saved = {node for node in quiet["outputs"] if quiet["outputs"][node].get("images")}
        assert not saved & set(quiet["events"].get("execution_cached", {}).get("nodes", [])), \
            f"prompt {index} came from ComfyUI's cache, so the comparison would prove nothing"
        busy_images, quiet_images = pixels(comfy_server, busy[index]["outputs"]), pixels(comfy_server, quiet["outputs"])
        assert len(busy_images) == len(quiet_images) >= 1, index
        for a, b in zip(busy_images, quiet_images):
            np.testing.assert_array_equal(a, b, err_msg=f"prompt {index}")
    models_after_quiet = loaded_models(comfy_server, settle)
    untrimmed = comfy_server.rss_bytes()
    growth = resident_bytes(comfy_server) / rss_after_warm_up - 1     # both read after `settle`: the same models held

    assert models_after_busy == models_after_warm_up
    assert models_after_quiet == models_after_warm_up
    assert growth < 0.05, (f"server RSS grew {growth:.1%} (from {rss_after_warm_up / 2**20:.0f} MiB; "
                           f"{untrimmed / 2**20:.0f} MiB before the allocator's free pages were handed back)")
    assert comfy_server.process.poll() is None
