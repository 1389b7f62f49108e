"""pytest plugin: a test marked `@pytest.mark.family("klein")` runs only on a ComfyUI that supports that family.

On an older host (the host lane runs 0.3.64 and 0.3.75) the test is skipped, never failed, with a reason that names
the family's first ComfyUI version and the host's ("Flux.2 Klein 4B needs ComfyUI 0.9.2 or newer; this host is ComfyUI
0.3.75"). The versions come from core/families.py (`comfy_min_version`) and the host's comfyui_version.py; setup.sh
builds no tiny files for such a family there (devkit/tiny_dit_models.py). A family whose tiny files need a newer
ComfyUI than the family itself (Flux.1's) is skipped below that version too, saying so. A bundled workflow's tests are marked
`@pytest.mark.workflow(name)` (`workflow_params`): skipped likewise on hosts older than its family, and on hosts that
devkit.workflows.NEEDS_NEWER_HOST says cannot run it (style-tokens-zimage on 0.3.75). tests/conftest.py loads this
plugin.
"""
import pytest

from comfy_adapter import versions
from . import paths
from .tiny_dit_models import unsupported_here
from .workflows import unsupported_workflow


def workflow_params(names) -> list:
    """pytest params for bundled workflows, each marked so that it skips on hosts that cannot run it: hosts older
    than its family, and hosts a workflow needs newer (devkit.workflows.unsupported_workflow)."""
    return [pytest.param(name, marks=pytest.mark.workflow(name)) for name in names]


def pytest_configure(config):
    config.addinivalue_line("markers", "family(key): needs a ComfyUI that supports this model family "
                                       "(skipped on older hosts, naming both versions)")
    config.addinivalue_line("markers", "workflow(name): runs this bundled workflow (skipped on hosts that cannot)")


def pytest_collection_modifyitems(config, items):
    host = None
    for item in items:
        for mark in item.iter_markers("family"):
            host = host or versions.host_version(paths.comfyui_dir())
            reason = unsupported_here(mark.args[0], host)
            if reason is not None:
                item.add_marker(pytest.mark.skip(reason=reason))
        for mark in item.iter_markers("workflow"):
            host = host or versions.host_version(paths.comfyui_dir())
            reason = unsupported_workflow(mark.args[0], host)
            if reason is not None:
                item.add_marker(pytest.mark.skip(reason=reason))
