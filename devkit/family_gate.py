"""pytest plugin: a test marked `@pytest.mark.family("klein")` runs only on a ComfyUI that supports that family.

On an older host (the host lane runs 0.3.64 and 0.3.75) the test is skipped, never failed, with a reason that names
the family's first ComfyUI version and the host's ("Flux.2 Klein 4B needs ComfyUI 0.9.2 or newer; this host is ComfyUI
0.3.75"). The versions come from core/families.py (`comfy_min_version`) and the host's comfyui_version.py; setup.sh
builds no tiny files for such a family there (devkit/tiny_dit_models.py). A family whose tiny files need a newer
ComfyUI than the family itself (Flux.1's) is skipped below that version too, saying so. tests/conftest.py loads this
plugin.
"""
import pytest

from comfy_adapter import versions
from . import paths
from .tiny_dit_models import unsupported_here


def family_params(values, family_of) -> list:
    """pytest params for `values`, each marked with its family (`family_of(value)`), so each skips on hosts older
    than its family (bundled workflows: `family_params(names, workflow_family)`)."""
    return [pytest.param(value, marks=pytest.mark.family(family_of(value))) for value in values]


def pytest_configure(config):
    config.addinivalue_line("markers", "family(key): needs a ComfyUI that supports this model family "
                                       "(skipped on older hosts, naming both versions)")


def pytest_collection_modifyitems(config, items):
    host = None
    for item in items:
        for mark in item.iter_markers("family"):
            host = host or versions.host_version(paths.comfyui_dir())
            reason = unsupported_here(mark.args[0], host)
            if reason is not None:
                item.add_marker(pytest.mark.skip(reason=reason))
