"""Whatever a constitution file holds, loading it gives a Constitution or a ConstitutionError.

Random bytes, random YAML-ish text and random YAML documents (dumped from random data, some
shaped like a constitution) must never escape as another exception (RecursionError,
UnicodeDecodeError, TypeError, ...): a user's bad file is an error message, not a bug.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cai.constitution import Constitution, ConstitutionError, load_constitution

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

FAST = settings(max_examples=200, deadline=None)
FIELDS = (
    "name",
    "version",
    "description",
    "extends",
    "remove",
    "judge_system_prompt",
    "defaults",
    "principles",
    "id",
    "critique_request",
    "revision_request",
    "comparison_question",
    "weight",
    "tags",
    "examples",
    "prompt",
    "response",
    "assessment_question",
    "tier",
    "aggregation",
    "tier_margin",
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=30)
    | st.sampled_from(["default", "x", "", "  ", "1.0", "p-1", "~", "../x.yaml"])
)
keys = st.sampled_from(FIELDS) | st.text(max_size=12)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5),
    max_leaves=16,
)
principle_like = st.dictionaries(st.sampled_from(FIELDS[8:]), values, max_size=6)
constitution_like = st.fixed_dictionaries(
    {"name": values},
    optional={
        "version": values,
        "description": values,
        "extends": values,
        "remove": values,
        "defaults": values,
        "principles": st.lists(principle_like, max_size=4) | values,
    },
)
yaml_fragments = st.sampled_from(
    [*"[]{}-:,&*!|>'\"#%@`?\n\t ab1", "&a ", "*a", "- ", "name: ", "principles:\n", "  "]
)
yaml_text = st.lists(yaml_fragments, max_size=80).map("".join)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("random-constitutions")


def check_outcome(path: Path) -> None:
    """Loading `path` gives a usable Constitution, or an error that names the file."""
    try:
        constitution = load_constitution(path)
    except ConstitutionError as err:
        assert err.issues, "an error lists at least one issue"
        assert err.issues[0].file.endswith(path.name)
        if len(err.issues) == 1:  # one problem is one line that names the file
            assert str(err) == str(err.issues[0]) and path.name in str(err)
        else:
            assert str(err).startswith(f"{len(err.issues)} problems")
        for issue in err.issues:
            assert issue.line is None or issue.line >= 1
        return
    assert isinstance(constitution, Constitution)
    assert constitution.principles
    assert constitution.content_hash == constitution.compute_hash()


@FAST
@given(data=st.binary(max_size=400))
def test_random_bytes(workdir, data):
    path = workdir / "bytes.yaml"
    path.write_bytes(data)
    check_outcome(path)


@FAST
@given(text=yaml_text)
def test_random_yaml_syntax(workdir, text):
    path = workdir / "syntax.yaml"
    path.write_text(text, encoding="utf-8")
    check_outcome(path)


@FAST
@given(document=values | constitution_like, flow=st.booleans())
def test_random_yaml_documents(workdir, document, flow):
    path = workdir / "document.yaml"
    path.write_text(
        yaml.safe_dump(document, default_flow_style=flow, allow_unicode=True), encoding="utf-8"
    )
    check_outcome(path)


def test_a_valid_document_still_loads(workdir):
    """The property above is not vacuous: a document of the same shape can load."""
    path = workdir / "valid.yaml"
    principle = {
        "id": "p1",
        "critique_request": "c",
        "revision_request": "r",
        "comparison_question": "q?",
    }
    path.write_text(yaml.safe_dump({"name": "n", "principles": [principle]}), encoding="utf-8")
    constitution = load_constitution(path)
    assert constitution.principle_ids == ["p1"]
