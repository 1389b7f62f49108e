"""StyleSmith's error types show by class name alone (ComfyUI's UI, tracebacks) and still pickle."""
import pickle
import traceback

import pytest

from core.data.image_folder import DatasetError
from core.evaluation.manifest import ManifestError
from core.formats.safe_files import WeightFileError

ERRORS = (WeightFileError, DatasetError, ManifestError)


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: e.__name__)
def test_error_shows_its_class_name_alone(error):
    import execution                          # ComfyUI's: what its UI shows as the exception type
    assert execution.full_type_name(error) == error.__name__
    assert traceback.format_exception_only(error("x is broken"))[-1] == f"{error.__name__}: x is broken\n"
    assert issubclass(error, ValueError)


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: e.__name__)
def test_error_and_its_class_pickle(error):
    """DataLoader workers send the class of a worker's error to the main process."""
    assert pickle.loads(pickle.dumps(error)) is error
    copy = pickle.loads(pickle.dumps(error("x is broken")))
    assert type(copy) is error and copy.args == ("x is broken",)
