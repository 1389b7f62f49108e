"""Run ComfyUI graphs in this process, without a server: fast node tests on the real host.

The pack is loaded exactly as ComfyUI loads it (`nodes.load_custom_node` on the pack folder in
`base_dir/custom_nodes`), so its modules get ComfyUI's package name and relative imports; the harness pack
(devkit/harness_pack) beside it is loaded the same way, as the server loads it.
"""
import asyncio
import uuid
from pathlib import Path

from comfy_adapter import versions
from comfy_adapter.host import import_comfy
from . import paths
from .server import HostError


class NodeExecutionError(RuntimeError):
    """A node raised while the graph ran; `.details` is ComfyUI's execution_error message."""

    def __init__(self, details: dict):
        self.details = details
        super().__init__(f"{details.get('node_type')} (node {details.get('node_id')}): "
                         f"{details.get('exception_type')}: {details.get('exception_message')}")


class PromptValidationError(ValueError):
    def __init__(self, error: dict, node_errors: dict):
        self.error, self.node_errors = error, node_errors
        super().__init__(f"{error.get('message')}: {error.get('details')} {node_errors}")


class _SilentServer:
    """What PromptExecutor needs of a PromptServer: somewhere to send progress messages."""
    client_id = None
    last_node_id = None
    last_prompt_id = None

    def send_sync(self, event, data, sid=None):
        pass


class InProcessHost:
    def __init__(self, base_dir: Path, extra_model_paths: Path | None = None, cpu: bool = True):
        self.base_dir = Path(base_dir)
        import_comfy(base_directory=self.base_dir, cpu=cpu)
        import utils.extra_config  # must precede `import nodes`, which reorders sys.path
        if extra_model_paths is not None:
            utils.extra_config.load_extra_path_config(str(extra_model_paths))
        import execution
        import nodes
        self._execution, self._nodes = execution, nodes
        asyncio.run(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
        for name in (paths.HARNESS_PACK_FOLDER_NAME, paths.PACK_FOLDER_NAME):
            pack = self.base_dir / "custom_nodes" / name
            if not asyncio.run(nodes.load_custom_node(str(pack), module_parent="custom_nodes")):
                raise HostError(f"ComfyUI could not import the pack at {pack}; see the log above.")
        self.executor = versions.prompt_executor(execution, _SilentServer())

    @property
    def node_classes(self) -> dict:
        return self._nodes.NODE_CLASS_MAPPINGS

    def run(self, prompt: dict, outputs_of: tuple = ()) -> dict:
        """Execute the graph; return {node id: tuple of that node's outputs} for `outputs_of`.

        Nodes named in `outputs_of` run even when no output node needs them.
        """
        prompt_id = uuid.uuid4().hex
        targets = self._validate(prompt_id, prompt, outputs_of)
        self.executor.execute(prompt, prompt_id, {}, targets)
        if not self.executor.success:
            for event, data in self.executor.status_messages:
                if event == "execution_error":
                    raise NodeExecutionError(data)
            raise NodeExecutionError({"exception_message": "execution failed without an error message"})
        results = {}
        for node_id in outputs_of:
            results[node_id] = tuple(values[0] for values in versions.cached_outputs(self.executor, node_id))
        return results

    def _validate(self, prompt_id: str, prompt: dict, outputs_of: tuple) -> list:
        """Validate the output nodes (as the server does) and the requested nodes; return all of them."""
        targets = []
        if any(getattr(self.node_classes.get(n["class_type"]), "OUTPUT_NODE", False) for n in prompt.values()):
            valid, error, good_outputs, node_errors = asyncio.run(
                self._execution.validate_prompt(prompt_id, prompt, None))
            if not valid:
                raise PromptValidationError(error, node_errors)
            targets += good_outputs
        validated = {}
        for node_id in outputs_of:
            valid, reasons, _ = asyncio.run(self._execution.validate_inputs(prompt_id, prompt, node_id, validated))
            if not valid:
                failed = {k: v[1] for k, v in validated.items() if not v[0] and v[1]}
                raise PromptValidationError({"message": f"node {node_id} failed validation", "details": reasons}, failed)
            targets.append(node_id)
        return targets

    def cached_nodes(self) -> set[str]:
        """Node ids the last run served from ComfyUI's cache instead of executing."""
        cached = set()
        for event, data in self.executor.status_messages:
            if event == "execution_cached":
                cached.update(data["nodes"])
        return cached
