"""Start the real ComfyUI server headless and talk to it over HTTP.

Used by the test fixtures and by the main-job runner. The server runs on CPU with the pack
installed in `base_dir/custom_nodes`; a pack that fails to import makes `start()` raise with
the log excerpt, because ComfyUI itself carries on and only logs `IMPORT FAILED`. The HTTP part is the
shipped client (evaluation/comfy_client.py); this adds the process, its log, and the local conveniences of a
server on this machine (saved images as arrays and as paths in its folders).
"""
import io
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from comfy_adapter import versions
from evaluation.comfy_client import ComfyClient, ComfyUIError, PromptResult
from . import paths

SERVER_FLAGS = ("--cpu", "--disable-auto-launch", "--disable-api-nodes")


class HostError(RuntimeError):
    """The ComfyUI server could not start, or a pack failed to import."""


@dataclass
class ServerResult(PromptResult):
    images: list = field(default_factory=list)         # float32 HxWx3 arrays in [0, 1]
    image_paths: list = field(default_factory=list)    # the saved files in this server's folders


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ComfyServer(ComfyClient):
    """A ComfyUI server process of its own, on a free port; its HTTP API is ComfyClient's."""

    def __init__(self, base_dir: Path, comfyui_dir: Path | None = None, python: str = sys.executable,
                 extra_args: tuple = ("--fp32-text-enc",), extra_model_paths: Path | None = None,
                 log_path: Path | None = None, packs: tuple = (paths.PACK_FOLDER_NAME, paths.HARNESS_PACK_FOLDER_NAME),
                 cpu: bool = True):
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
        super().__init__("http://127.0.0.1:0")     # the real port is chosen in start()

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self, timeout: float = 180.0) -> "ComfyServer":
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
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
            except ComfyUIError:
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

    # ---- HTTP: ComfyClient's, plus what only a local server has ------------------------------
    def wait(self, prompt_id: str, timeout: float = 600) -> dict:
        """ComfyClient.wait; when the server stops answering because its process died, HostError with the log."""
        try:
            return super().wait(prompt_id, timeout)
        except ComfyUIError as e:
            if self.exited_within(2.0):     # its socket closes a moment before the process can be reaped
                raise HostError(f"ComfyUI died while running {prompt_id}.\n{self.log_tail()}") from e
            raise

    def exited_within(self, seconds: float) -> bool:
        try:
            self.process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            return False
        return True

    def fetch_image(self, ref: dict) -> np.ndarray:
        """One saved image as a float32 HxWx3 array in [0, 1]."""
        return np.asarray(Image.open(io.BytesIO(self.image_bytes(ref))).convert("RGB"), dtype=np.float32) / 255.0

    def run(self, prompt: dict, timeout: float = 600, workflow: dict | None = None) -> ServerResult:
        """ComfyClient.run, with every saved image fetched as an array and its path in this server's folders."""
        result = super().run(prompt, timeout, workflow)
        return ServerResult(**vars(result), images=[self.fetch_image(ref) for ref in result.image_refs],
                            image_paths=[self.base_dir / ref["type"] / ref["subfolder"] / ref["filename"]
                                         for ref in result.image_refs])
