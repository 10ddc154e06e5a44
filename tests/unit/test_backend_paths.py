"""A bad model path fails fast with a clear message instead of a hub traceback."""

from __future__ import annotations

import pytest

from cai.backends.base import BackendError
from cai.backends.local import check_model_path


def test_model_directory_and_hub_ids_pass(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    check_model_path(str(tmp_path))
    check_model_path("org/model-name")


@pytest.mark.parametrize("model", ["missing-model", "/no/such/dir", "./rel/dir"])
def test_missing_paths_are_clear_errors(model):
    with pytest.raises(BackendError, match="it does not exist"):
        check_model_path(model)


def test_directory_without_config_is_a_clear_error(tmp_path):
    with pytest.raises(BackendError, match=r"no config\.json there"):
        check_model_path(str(tmp_path))
