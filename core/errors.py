"""StyleSmithError, the base of StyleSmith's own error types: each is shown by its class name alone.

ComfyUI's UI shows an error's type as `module.ClassName` unless the module is `builtins` (execution.full_type_name,
the same on every host we serve), and a custom node pack's modules carry the pack's folder name or path, so the UI
showed "ComfyUI-StyleSmith.core.formats.safe_files.WeightFileError". Python's tracebacks print the module the same
way. These classes therefore report `builtins` as their module and keep the real one in `home_module`; pickling
(DataLoader workers send the class of a worker's error to the main process) finds them there.
"""
import copyreg
import importlib


class _ShownByName(type):
    def __new__(mcls, name, bases, namespace):
        cls = super().__new__(mcls, name, bases, namespace)
        cls.home_module = cls.__module__
        cls.__module__ = "builtins"
        return cls


def _class_at_home(module: str, qualname: str) -> type:
    found = importlib.import_module(module)
    for part in qualname.split("."):
        found = getattr(found, part)
    return found


copyreg.pickle(_ShownByName, lambda cls: (_class_at_home, (cls.home_module, cls.__qualname__)))


class StyleSmithError(Exception, metaclass=_ShownByName):
    """Base of StyleSmith's error types."""
