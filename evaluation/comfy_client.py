"""A small client of a running ComfyUI's HTTP API (stdlib only): the comparison runner generates through it, and
the test harness's server (devkit/server.py) adds only the process around it.

The routes are the ones ComfyUI's frontend uses: GET /object_info, POST /upload/image, POST /prompt,
GET /history/<prompt id> and GET /view. The server may be on another machine: images go to it by upload and
come back as the bytes it saved, never through its folders.
"""
import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path


class ComfyUIError(RuntimeError):
    """ComfyUI did not answer at the URL, or answered a request with an HTTP error (`status` and `body` then set)."""

    def __init__(self, message: str, status: int | None = None, body: bytes = b""):
        super().__init__(message)
        self.status, self.body = status, body


@dataclass
class PromptResult:
    prompt_id: str
    status: str                      # "success" or "error"
    outputs: dict                    # node id -> ComfyUI UI output
    error: dict | None = None        # the execution_error message, or the validation error body of POST /prompt

    @property
    def image_refs(self) -> list[dict]:
        """Every image the outputs list ({filename, subfolder, type}), in node order; GET /view serves each."""
        return [ref for node_output in self.outputs.values() for ref in node_output.get("images", [])]


class ComfyClient:
    def __init__(self, url: str):
        self.url = url.rstrip("/")

    def _request(self, path: str, data: bytes | None = None, content_type: str = "application/json",
                 timeout: float = 30) -> bytes:
        request = urllib.request.Request(self.url + path, data=data,
                                         headers={"Content-Type": content_type} if data is not None else {})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.read()
        except urllib.error.HTTPError as e:
            body = e.read()
            raise ComfyUIError(f"ComfyUI at {self.url} answered {path.split('?')[0]} with HTTP {e.code}: "
                               f"{body[:500].decode(errors='replace')}", e.code, body) from e
        except OSError as e:         # URLError, refused or reset connections and timeouts are all OSErrors
            raise ComfyUIError(f"ComfyUI did not answer at {self.url} ({e}): start ComfyUI with the StyleSmith pack "
                               "installed, or give the address it listens on.") from e

    def get_json(self, path: str, timeout: float = 30):
        return json.loads(self._request(path, timeout=timeout))

    def post_json(self, path: str, payload) -> bytes:
        """POST `payload` as JSON; the answer's body."""
        return self._request(path, json.dumps(payload).encode())

    def object_info(self) -> dict:
        return self.get_json("/object_info", timeout=60)

    def upload_image(self, path: Path, name: str, subfolder: str = "") -> str:
        """POST /upload/image: `path`'s bytes go to the server's input folder as `subfolder/name` (replacing a file
        of that name); returns the name LoadImage takes."""
        boundary = uuid.uuid4().hex
        fields = {"type": "input", "subfolder": subfolder, "overwrite": "true"}
        parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode()
                 for key, value in fields.items()]
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n'
                     "Content-Type: application/octet-stream\r\n\r\n".encode() + Path(path).read_bytes() + b"\r\n")
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        saved = json.loads(self._request("/upload/image", body, f"multipart/form-data; boundary={boundary}"))
        return f"{saved['subfolder']}/{saved['name']}" if saved.get("subfolder") else saved["name"]

    def queue(self, prompt: dict, workflow: dict | None = None) -> tuple[str | None, dict | None]:
        """POST /prompt. Returns (prompt_id, None), or (None, validation error body) when ComfyUI refuses the graph.

        With `workflow` (UI format), saved images carry it, as when the frontend queues a graph.
        """
        request = {"prompt": prompt, "client_id": uuid.uuid4().hex}
        if workflow is not None:
            request["extra_data"] = {"extra_pnginfo": {"workflow": workflow}}
        try:
            return json.loads(self.post_json("/prompt", request))["prompt_id"], None
        except ComfyUIError as e:
            if e.status == 400:
                return None, json.loads(e.body)
            raise

    def wait(self, prompt_id: str, timeout: float = 600) -> dict:
        """Poll /history until the prompt has finished; return its history entry."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            entry = self.get_json(f"/history/{prompt_id}").get(prompt_id, {})
            status = entry.get("status", {})
            if status.get("completed") is not None and status.get("status_str") in ("success", "error"):
                return entry
            time.sleep(0.1)
        raise TimeoutError(f"prompt {prompt_id} did not finish within {timeout} s on ComfyUI at {self.url}")

    def run(self, prompt: dict, timeout: float = 600, workflow: dict | None = None) -> PromptResult:
        """Queue a prompt and wait for it. Validation failures and execution errors come back as data (status
        "error", `error` set), not exceptions."""
        prompt_id, invalid = self.queue(prompt, workflow)
        if invalid is not None:
            return PromptResult(prompt_id="", status="error", outputs={}, error=invalid)
        entry = self.wait(prompt_id, timeout)
        result = PromptResult(prompt_id=prompt_id, status=entry["status"]["status_str"], outputs=entry["outputs"])
        for event, data in entry["status"].get("messages", []):
            if event == "execution_error":
                result.error = data
        return result

    def image_bytes(self, ref: dict) -> bytes:
        """GET /view: the file of one image ref as the server saved it (PNG for SaveImage)."""
        query = urllib.parse.urlencode({key: ref[key] for key in ("filename", "subfolder", "type")})
        return self._request(f"/view?{query}")
