"""Start the real ComfyUI server headless and talk to it over HTTP.

Used by the test fixtures and by the main-job runner. The server runs on CPU with the pack
installed in `base_dir/custom_nodes`; a pack that fails to import makes `start()` raise with
the log excerpt, because ComfyUI itself carries on and only logs `IMPORT FAILED`.
"""
import io
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from comfy_adapter import versions
from . import paths

SERVER_FLAGS = ("--cpu", "--disable-auto-launch", "--disable-api-nodes")


class HostError(RuntimeError):
    """The ComfyUI server could not start, or a pack failed to import."""


@dataclass
class PromptResult:
    prompt_id: str
    status: str                                   # "success" or "error"
    outputs: dict                                 # node id -> ComfyUI UI output
    images: list = field(default_factory=list)    # float32 HxWx3 arrays in [0, 1]
    image_paths: list = field(default_factory=list)
    error: dict | None = None                     # the execution_error message, if any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ComfyServer:
    def __init__(self, base_dir: Path, comfyui_dir: Path | None = None, python: str = sys.executable,
                 extra_args: tuple = ("--fp32-text-enc",), extra_model_paths: Path | None = None,
                 log_path: Path | None = None, packs: tuple = (paths.PACK_FOLDER_NAME,), cpu: bool = True):
        self.base_dir = Path(base_dir)
        self.comfyui_dir = Path(comfyui_dir or paths.comfyui_dir())
        self.python = python
        self.extra_args = tuple(extra_args)
        self.extra_model_paths = extra_model_paths
        self.log_path = Path(log_path or self.base_dir / "comfyui-server.log")
        self.packs = packs
        self.cpu = cpu
        self.port = None
        self.process = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self, timeout: float = 180.0) -> "ComfyServer":
        self.port = free_port()
        flags = SERVER_FLAGS if self.cpu else tuple(f for f in SERVER_FLAGS if f != "--cpu")
        cmd = [self.python, "main.py", *flags, "--listen", "127.0.0.1", "--port", str(self.port),
               "--base-directory", str(self.base_dir), *self.extra_args]
        if self.extra_model_paths is not None:
            cmd += ["--extra-model-paths-config", str(self.extra_model_paths)]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen(cmd, cwd=self.comfyui_dir, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise HostError(f"ComfyUI exited with code {self.process.returncode} while starting.\n"
                                f"{self.log_tail()}")
            try:
                self.get_json("/system_stats", timeout=2)
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.25)
        else:
            self.stop()
            raise HostError(f"ComfyUI did not answer within {timeout:.0f} s.\n{self.log_tail()}")
        failed = [p for p, (_, ok) in self.import_times().items() if not ok and Path(p).name in self.packs]
        if failed:
            excerpt = self.log_tail()
            self.stop()
            raise HostError(f"IMPORT FAILED for {', '.join(failed)}: the pack did not import.\n{excerpt}")
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if getattr(self, "_log", None):
            self._log.close()
            self._log = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ---- log ---------------------------------------------------------------------------------
    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 60) -> str:
        return "----- ComfyUI log (tail) -----\n" + "\n".join(self.log_text().splitlines()[-lines:])

    def import_times(self) -> dict:
        """{pack path: (seconds, imported ok)} from ComfyUI's 'Import times for custom nodes' block."""
        found = {}
        for line in self.log_text().splitlines():
            entry = versions.import_time_entry(line)
            if entry is not None and "custom_nodes" in entry[0]:
                path, seconds, ok = entry
                found[path] = (seconds, ok)
        return found

    def peak_rss_bytes(self) -> int:
        """Peak resident memory of the server process (VmHWM)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise HostError("VmHWM not found in /proc status")

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise HostError("VmRSS not found in /proc status")

    # ---- HTTP --------------------------------------------------------------------------------
    def _request(self, path: str, data: bytes | None = None, timeout: float = 30):
        req = urllib.request.Request(self.url + path, data=data,
                                     headers={"Content-Type": "application/json"} if data else {})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.read()

    def get_json(self, path: str, timeout: float = 30):
        return json.loads(self._request(path, timeout=timeout))

    def object_info(self) -> dict:
        return self.get_json("/object_info", timeout=60)

    def queue(self, prompt: dict, workflow: dict | None = None) -> tuple[str | None, dict | None]:
        """POST /prompt. Returns (prompt_id, None), or (None, validation error body) on HTTP 400.

        With `workflow` (UI format), saved images carry it, as when the frontend queues a graph.
        """
        request = {"prompt": prompt, "client_id": uuid.uuid4().hex}
        if workflow is not None:
            request["extra_data"] = {"extra_pnginfo": {"workflow": workflow}}
        body = json.dumps(request).encode()
        try:
            return json.loads(self._request("/prompt", data=body))["prompt_id"], None
        except urllib.error.HTTPError as e:
            if e.code == 400:
                return None, json.loads(e.read())
            raise

    def wait(self, prompt_id: str, timeout: float = 600) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            history = self.get_json(f"/history/{prompt_id}")
            if prompt_id in history and history[prompt_id].get("status", {}).get("completed") is not None:
                entry = history[prompt_id]
                if entry["status"].get("status_str") in ("success", "error"):
                    return entry
            if self.process.poll() is not None:
                raise HostError(f"ComfyUI died while running {prompt_id}.\n{self.log_tail()}")
            time.sleep(0.1)
        raise TimeoutError(f"prompt {prompt_id} did not finish within {timeout} s")

    def fetch_image(self, ref: dict) -> np.ndarray:
        query = urllib.parse.urlencode({k: ref[k] for k in ("filename", "subfolder", "type")})
        png = self._request(f"/view?{query}")
        return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float32) / 255.0

    def run(self, prompt: dict, timeout: float = 600, workflow: dict | None = None) -> PromptResult:
        """Queue a prompt, wait, and return its outputs with saved images as arrays.

        Validation failures and execution errors come back as data (status "error"), not exceptions.
        """
        prompt_id, invalid = self.queue(prompt, workflow)
        if invalid is not None:
            return PromptResult(prompt_id="", status="error", outputs={}, error=invalid)
        entry = self.wait(prompt_id, timeout)
        result = PromptResult(prompt_id=prompt_id, status=entry["status"]["status_str"], outputs=entry["outputs"])
        for event, data in entry["status"].get("messages", []):
            if event == "execution_error":
                result.error = data
        for node_output in entry["outputs"].values():
            for ref in node_output.get("images", []):
                result.images.append(self.fetch_image(ref))
                folder = self.base_dir / ref["type"] / ref["subfolder"]
                result.image_paths.append(folder / ref["filename"])
        return result
