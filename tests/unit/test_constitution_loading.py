"""Loading constitutions: bundled files, extends, hashing, and every error path with its message."""

from __future__ import annotations

import itertools
import json
import textwrap
from pathlib import Path

import pytest

from cai.constitution import (
    ConstitutionError,
    load_constitution,
    load_constitution_text,
)

PRINCIPLE = """\
  - id: {id}
    critique_request: Critique {id}.
    revision_request: Revise {id}.
    comparison_question: Which is better on {id}?
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def issues_of(path: Path | str) -> list:
    with pytest.raises(ConstitutionError) as info:
        load_constitution(path)
    return info.value.issues


def only_issue(path: Path | str):
    issues = issues_of(path)
    assert len(issues) == 1, [str(i) for i in issues]
    return issues[0]


# --- bundled constitutions ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["default", "helpful-only", "medical-safety", "rl-paper"])
def test_bundled_constitutions_load_and_round_trip(name, tmp_path):
    constitution = load_constitution(name)
    assert constitution.name == name
    assert len(constitution.content_hash) == 64
    assert constitution.content_hash == constitution.compute_hash()
    ids = constitution.principle_ids
    assert len(ids) == len(set(ids))
    comparison_only = name == "rl-paper"
    for principle in constitution.principles:
        if comparison_only:
            assert principle.critique_request is None and principle.revision_request is None
        else:
            assert principle.critique_request and principle.revision_request
        assert principle.comparison_question.endswith("?")
        assert principle.tags
    # The resolved YAML is self-contained and loads back to the same content.
    copy = write(tmp_path, "copy.yaml", constitution.to_yaml())
    again = load_constitution(copy)
    assert again.canonical() == constitution.canonical()
    assert again.content_hash == constitution.content_hash


def test_default_is_harmless_and_helpful_with_about_16_principles():
    constitution = load_constitution("default")
    assert 14 <= len(constitution.principles) <= 18
    tags = {tag for p in constitution.principles for tag in p.tags}
    assert {"harmless", "helpful", "honest"} <= tags
    assert constitution.judge_system_prompt
    assert constitution.defaults.principles_per_judgment >= 1


def test_medical_safety_extends_overrides_removes_and_adds():
    default = load_constitution("default")
    medical = load_constitution("medical-safety")
    assert medical.extends == ["default (bundled)"]
    assert "legal-and-medical-care" in default.principle_ids
    assert "legal-and-medical-care" not in medical.principle_ids
    # Inherited order is kept; new principles come after.
    inherited = [i for i in default.principle_ids if i != "legal-and-medical-care"]
    assert medical.principle_ids[: len(inherited)] == inherited
    assert "emergency-escalation" in medical.principle_ids[len(inherited) :]
    # A partial override changes only the fields it gives.
    honesty, base = medical.principle("honesty"), default.principle("honesty")
    assert honesty.comparison_question != base.comparison_question
    assert "medically" in honesty.comparison_question
    assert honesty.critique_request == base.critique_request
    assert medical.principle("helpfulness").weight == 1.0 != default.principle("helpfulness").weight
    # Defaults merge field by field; the judge prompt is inherited.
    assert medical.defaults.principles_per_judgment == 3
    assert medical.defaults.critique_rounds == default.defaults.critique_rounds
    assert medical.judge_system_prompt == default.judge_system_prompt
    assert medical.principle("emergency-escalation").examples[0].revision


def test_principle_lookup_names_valid_ids():
    constitution = load_constitution("helpful-only")
    with pytest.raises(KeyError, match="its principles are: helpfulness"):
        constitution.principle("nope")


# --- hashing -----------------------------------------------------------------------------


def test_hash_ignores_formatting_but_not_content(tmp_path):
    one = write(
        tmp_path,
        "one.yaml",
        """\
        # a comment
        name: x
        principles:
          - id: a
            critique_request: Critique a.
            revision_request: Revise a.
            comparison_question: Which is better?
        """,
    )
    two = write(
        tmp_path,
        "two.yaml",
        """\
        principles:
        - comparison_question: "Which is better?"
          revision_request: >
            Revise a.
          id: a
          critique_request: |
            Critique a.
        name: x
        """,
    )
    changed = write(tmp_path, "three.yaml", one.read_text().replace("Revise a.", "Revise b."))
    hash_one = load_constitution(one).content_hash
    assert load_constitution(two).content_hash == hash_one
    assert load_constitution(changed).content_hash != hash_one


# --- extends -----------------------------------------------------------------------------


def test_extends_by_relative_path_and_chain(tmp_path):
    write(tmp_path, "base/root.yaml", "name: root\nprinciples:\n" + PRINCIPLE.format(id="a"))
    write(
        tmp_path,
        "base/mid.yaml",
        "name: mid\nextends: root.yaml\nprinciples:\n" + PRINCIPLE.format(id="b"),
    )
    leaf = write(
        tmp_path,
        "leaf/leaf.yaml",
        """\
        name: leaf
        extends: ../base/mid.yaml
        remove: [a]
        principles:
          - id: b
            weight: 3
        """,
    )
    constitution = load_constitution(leaf)
    assert constitution.principle_ids == ["b"]
    assert constitution.principle("b").weight == 3
    assert constitution.principle("b").critique_request == "Critique b."
    assert len(constitution.extends) == 2


def test_load_from_text_and_bundled_extends():
    constitution = load_constitution_text(
        "name: mine\nextends: helpful-only\nremove: [clarity]\n", source="inline"
    )
    assert "clarity" not in constitution.principle_ids
    assert "helpfulness" in constitution.principle_ids


# --- error paths -------------------------------------------------------------------------


def test_unknown_key_suggests_the_right_one(tmp_path):
    path = write(
        tmp_path,
        "c.yaml",
        """\
        name: x
        descripton: typo
        principles:
          - id: a
            critique_request: Critique a.
            revision_request: Revise a.
            comparison_quesiton: Which?
        """,
    )
    issues = issues_of(path)
    # The principle is complete for revise, so only the two unknown keys are problems.
    assert [(i.line, i.field) for i in issues] == [
        (2, "descripton"),
        (7, "principles[0].comparison_quesiton"),
    ]
    assert issues[0].file == "c.yaml" or issues[0].file.endswith("c.yaml")
    assert "unknown field `descripton`" in issues[0].message
    assert "did you mean `description`?" in issues[0].hint
    assert "did you mean `comparison_question`?" in issues[1].hint


def test_missing_fields_are_named(tmp_path):
    path = write(
        tmp_path,
        "c.yaml",
        """\
        principles:
          - id: a
            critique_request: Critique a.
        """,
    )
    issues = issues_of(path)
    messages = {(i.line, i.message) for i in issues}
    assert (1, "missing required field `name`") in messages
    assert (
        2,
        "principle `a` is missing required field `revision_request`: it has "
        "`critique_request`, and `cai revise` uses the two together",
    ) in messages


def test_a_principle_with_no_use_names_every_use(tmp_path):
    path = write(tmp_path, "c.yaml", "name: x\nprinciples:\n  - id: a\n    weight: 2\n")
    (issue,) = issues_of(path)
    assert issue.line == 3 and issue.field == "principles[0]"
    assert "`comparison_question` (for cai judge)" in issue.message
    assert "`critique_request` and `revision_request` (for cai revise)" in issue.message
    assert "`assessment_question`" in issue.message


def test_single_use_principles_load(tmp_path):
    path = write(
        tmp_path,
        "c.yaml",
        """\
        name: x
        principles:
          - id: judge-only
            comparison_question: Which response is kinder?
          - id: revise-only
            critique_request: What is unkind?
            revision_request: Make it kinder.
          - id: assess-only
            assessment_question: Is the reply kind?
            tier: 2
        """,
    )
    constitution = load_constitution(path)
    judge_only, revise_only, assess_only = constitution.principles
    assert judge_only.critique_request is None and judge_only.revision_request is None
    assert revise_only.comparison_question is None
    assert assess_only.tier == 2 and assess_only.comparison_question is None
    # Unset phrasings stay out of the resolved file (and of the hash).
    assert "critique_request" not in constitution.to_yaml().split("revise-only")[0]


def test_an_override_may_drop_an_inherited_phrasing_but_not_every_use(tmp_path):
    write(
        tmp_path,
        "base.yaml",
        """\
        name: base
        principles:
          - id: a
            comparison_question: Which is better?
            critique_request: Critique.
            revision_request: Revise.
        """,
    )
    ok = write(
        tmp_path,
        "ok.yaml",
        "name: ok\nextends: base.yaml\nprinciples:\n  - id: a\n    comparison_question: null\n",
    )
    assert load_constitution(ok).principle("a").comparison_question is None
    bad = write(
        tmp_path,
        "bad.yaml",
        "name: bad\nextends: base.yaml\nprinciples:\n  - id: a\n    revision_request: null\n",
    )
    (issue,) = issues_of(bad)
    assert "missing required field `revision_request`" in issue.message
    assert "merged with the inherited principle" in issue.message


def test_unset_new_fields_stay_out_of_the_hashed_content():
    # Optional fields added later (tier, assessment_question, aggregation, tier_margin) must
    # not change the hash, and so the principle draws and resume fingerprints, of a file
    # that does not use them.
    canonical = load_constitution("default").canonical()
    assert set(canonical["defaults"]) == {
        "principles_per_judgment",
        "weighted_sampling",
        "critique_rounds",
    }
    for principle in canonical["principles"]:
        assert "tier" not in principle and "assessment_question" not in principle


def test_duplicate_principle_id_points_at_both_lines(tmp_path):
    body = PRINCIPLE.format(id="a") + PRINCIPLE.format(id="b") + PRINCIPLE.format(id="a")
    issue = only_issue(write(tmp_path, "c.yaml", "name: x\nprinciples:\n" + body))
    assert issue.line == 11
    assert issue.field == "principles[2].id"
    assert issue.message == "duplicate principle id `a` (first defined on line 3)"


def test_empty_text(tmp_path):
    path = write(
        tmp_path,
        "c.yaml",
        'name: x\nprinciples:\n  - id: a\n    critique_request: "   "\n'
        "    revision_request: r\n    comparison_question: q\n",
    )
    issue = only_issue(path)
    assert (issue.line, issue.field, issue.message) == (
        4,
        "principles[0].critique_request",
        "text is empty",
    )


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("    weight: heavy", "wrong type: expected a number, got text 'heavy'"),
        ("    tags: harmless", "wrong type: expected a list, got text 'harmless'"),
        ("    critique_request: 5", "wrong type: expected text, got a number 5"),
        ("    examples: {prompt: p}", "wrong type: expected a list, got a mapping"),
        ("    critique_request: off", "wrong type: expected text, got a boolean False"),
    ],
)
def test_wrong_types(tmp_path, line, expected):
    lines = (
        "name: x\nprinciples:\n  - id: a\n    critique_request: c\n"
        "    revision_request: r\n    comparison_question: q\n"
    ).splitlines()
    key = line.split(":")[0]
    lines = [existing for existing in lines if existing.split(":")[0] != key] + [line]
    issue = only_issue(write(tmp_path, "c.yaml", "\n".join(lines) + "\n"))
    assert issue.message == expected
    assert issue.line == len(lines)
    assert issue.field == f"principles[0].{key.strip()}"
    if "boolean" in expected:
        assert 'quote it, e.g. "off"' in issue.hint


def test_cyclic_extends(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # paths in messages are shown relative to the working directory
    write(tmp_path, "a.yaml", "name: a\nextends: b.yaml\n")
    write(tmp_path, "b.yaml", "name: b\n\nextends: a.yaml\n")
    issues = issues_of(tmp_path / "a.yaml")
    cycle = [i for i in issues if "cyclic extends" in i.message]
    assert len(cycle) == 1
    assert (cycle[0].file, cycle[0].line) == ("b.yaml", 3)
    assert cycle[0].message == "cyclic extends: a.yaml -> b.yaml -> a.yaml"


def test_self_extends(tmp_path):
    path = write(tmp_path, "self.yaml", "name: s\nextends: self.yaml\n")
    issue = only_issue(path)
    assert "cyclic extends" in issue.message and issue.line == 2


def test_extends_unknown_name_suggests(tmp_path):
    issue = only_issue(write(tmp_path, "c.yaml", "name: x\nextends: defualt\n"))
    assert issue.message == "cannot find `defualt` to extend"
    assert "did you mean `default`?" in issue.hint


def test_errors_in_parent_name_the_parent_file(tmp_path):
    write(tmp_path, "parent.yaml", "name: p\nprinciples:\n  - id: a\n    weight: [1]\n")
    issues = issues_of(write(tmp_path, "child.yaml", "name: c\nextends: parent.yaml\n"))
    assert issues[0].file.endswith("child.yaml") and "has errors" in issues[0].message
    assert any(i.file.endswith("parent.yaml") and i.line == 4 for i in issues[1:])


def test_remove_errors(tmp_path):
    issues = issues_of(
        write(
            tmp_path,
            "c.yaml",
            """\
            name: x
            extends: default
            remove: [helpfullness, clarity]
            principles:
              - id: clarity
                weight: 2
                wieght: 3
            """,
        )
    )
    assert [i.field for i in issues] == ["remove[0]", "remove[1]", "principles[0].wieght"]
    assert "did you mean `helpfulness`?" in issues[0].hint
    assert "both removed and redefined" in issues[1].message
    alone = only_issue(
        write(
            tmp_path,
            "d.yaml",
            "name: x\nremove: [a]\n" + "principles:\n" + PRINCIPLE.format(id="b"),
        )
    )
    assert "only applies to a constitution that `extends`" in alone.message


def test_yaml_syntax_error_has_line(tmp_path):
    issue = only_issue(
        write(tmp_path, "c.yaml", "name: x\nprinciples:\n  - id: a\n    tags: [unclosed\n")
    )
    assert issue.message.startswith("invalid YAML")
    assert "started on line 4" in issue.message


def test_yaml_is_loaded_safely(tmp_path):
    marker = tmp_path / "pwned"
    path = write(
        tmp_path,
        "c.yaml",
        f'name: !!python/object/apply:os.system ["touch {marker}"]\nprinciples: []\n',
    )
    issue = only_issue(path)
    assert issue.line == 1 and "invalid YAML" in issue.message
    assert not marker.exists()


def test_duplicate_yaml_keys_are_reported(tmp_path):
    issue = only_issue(
        write(tmp_path, "c.yaml", "name: x\nname: y\nprinciples:\n" + PRINCIPLE.format(id="a"))
    )
    assert (issue.line, issue.field) == (2, "name")
    assert "given twice" in issue.message


@pytest.mark.parametrize(("text", "kind"), [("", "empty"), ("- a\n- b\n", "a list")])
def test_file_must_be_a_mapping(tmp_path, text, kind):
    issue = only_issue(write(tmp_path, "c.yaml", text))
    assert f"this file is {kind}" in issue.message


def test_no_principles(tmp_path):
    issue = only_issue(write(tmp_path, "c.yaml", "name: x\nprinciples: []\n"))
    assert issue.message == "the constitution has no principles"


def test_all_errors_of_a_file_at_once_sorted_by_line(tmp_path):
    path = write(
        tmp_path,
        "c.yaml",
        """\
        name: x
        version: ""
        defaults:
          principles_per_judgement: 2
        principles:
          - id: "bad id"
            critique_request: c
            revision_request: r
            comparison_question: q
          - id: b
            critique_request: c
            revision_request: r
            comparison_question: q
            weight: -1
        """,
    )
    with pytest.raises(ConstitutionError) as info:
        load_constitution(path)
    lines = [i.line for i in info.value.issues]
    assert lines == [2, 4, 6, 14]
    text = str(info.value)
    assert text.startswith("4 problems in constitution:")
    assert "c.yaml:4:3: defaults.principles_per_judgement: unknown field" in text
    assert "did you mean `principles_per_judgment`?" in text
    assert "c.yaml:14:5: principles[1].weight: must be >= 0.0, got -1" in text


def test_error_survives_pickling(tmp_path):
    import pickle

    with pytest.raises(ConstitutionError) as info:
        load_constitution(write(tmp_path, "c.yaml", "name: x\nprinciples: []\n"))
    copy = pickle.loads(pickle.dumps(info.value))
    assert copy.issues == info.value.issues and str(copy) == str(info.value)


def test_unknown_path_or_name(tmp_path):
    issue = only_issue(str(tmp_path / "missing.yaml"))
    assert issue.message == "no such file or bundled constitution"
    assert "bundled constitutions: default, helpful-only, medical-safety, rl-paper" in issue.hint
    assert "did you mean `helpful-only`?" in only_issue("helpfull-only").hint


def test_guide_example_validates(tmp_path):
    """The complete example in docs/constitutions.md is a valid constitution."""
    guide = (Path(__file__).parents[2] / "docs" / "constitutions.md").read_text()
    blocks = [part.split("```", 1)[0] for part in guide.split("```yaml\n")[1:]]
    example = next(block for block in blocks if "extends: default" in block)
    constitution = load_constitution(write(tmp_path, "support-bot.yaml", example))
    assert constitution.name == "support-bot"
    assert "humble-ai" not in constitution.principle_ids
    assert constitution.principle("helpfulness").weight == 3
    assert constitution.principle_ids[-2:] == ["no-invented-features", "customer-privacy"]


def _alias_levels(count: int) -> list[str]:
    """YAML lines a, b, c, ... each a list of nine aliases of the line before."""
    names = "abcdefghij"[:count]
    levels = ["a: &a [" + ", ".join(['"lol"'] * 9) + "]"]
    for prev, name in itertools.pairwise(names):
        levels.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    return levels


def test_nested_yaml_aliases_are_not_expanded_while_mapping_lines(tmp_path):
    import time

    path = write(tmp_path, "aliases.yaml", "\n".join(_alias_levels(4)) + "\nname: x\n")
    start = time.perf_counter()
    issues = issues_of(path)
    assert time.perf_counter() - start < 5
    assert [i.field for i in issues] == list("abcd")
    assert all("unknown field" in i.message for i in issues)


def test_yaml_alias_bomb_is_refused_with_its_line(tmp_path):
    import time

    text = "name: x\n" + "\n".join(_alias_levels(9)) + "\nprinciples: *i\n"
    start = time.perf_counter()
    issue = only_issue(write(tmp_path, "bomb.yaml", text))
    assert time.perf_counter() - start < 5
    assert issue.file.endswith("bomb.yaml")
    # a: 10 values, b: 91, ..., f: 597871, the first one over the limit, on line 7.
    assert issue.line == 7
    assert "aliases expand to more than 100000 values" in issue.message


def test_recursive_alias_is_refused(tmp_path):
    issue = only_issue(write(tmp_path, "loop.yaml", "name: x\nprinciples: &p [1, *p]\n"))
    assert issue.line == 2
    assert "an alias refers to a list or mapping that contains it" in issue.message


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("principles: " + "[" * 10_000, 1),
        ("principles: " + "{a: " * 10_000, 1),
        ("principles:\n" + "- " * 10_000 + "x\n", 2),
        ("principles:\n" + "".join("  " * i + "-\n" for i in range(1, 200)), 65),
    ],
    ids=["flow-lists", "flow-mappings", "block-list-items", "indented-lists"],
)
def test_deep_nesting_is_an_error_not_a_recursion_error(tmp_path, text, line):
    issue = only_issue(write(tmp_path, "deep.yaml", text))
    assert issue.file.endswith("deep.yaml")
    assert issue.line == line
    assert "nests deeper than 64 levels" in issue.message


def test_non_utf8_bytes_name_the_byte_offset(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: x\ndescription: caf\u00e9\n".encode("latin-1"))
    issue = only_issue(path)
    assert issue.file.endswith("latin1.yaml")
    assert issue.line == 2
    assert "not UTF-8 text: byte 0xe9 at byte offset 24" in issue.message
    assert "UTF-8" in issue.hint


def test_characters_yaml_forbids_are_an_error_with_a_line(tmp_path):
    issue = only_issue(write(tmp_path, "nul.yaml", "name: x\ndescription: a\x00b\n"))
    assert (issue.line, issue.column) == (2, 15)
    assert "character U+0000 is not allowed" in issue.message


def test_a_home_directory_that_does_not_exist():
    issue = only_issue("~no-such-user-here/constitution.yaml")
    assert issue.file == "~no-such-user-here/constitution.yaml"
    assert "no such file or bundled constitution" in issue.message


def test_to_yaml_round_trips_tricky_text(tmp_path):
    tricky = [
        "Which: response? # not a comment, 'quoted' and \"double\" and a very long line that folds",
        "- looks like a list item, then {braces} & *star and |pipe and >gt, long enough to fold",
        "Line one\n  indented line two\n\nline four after a blank",
        "ünïcödé — 日本語 ✓",
    ]
    body = "".join(
        f"  - id: p{i}\n    critique_request: {json.dumps(text)}\n"
        f"    revision_request: r\n    comparison_question: q\n"
        for i, text in enumerate(tricky)
    )
    original = load_constitution(write(tmp_path, "t.yaml", "name: t\nprinciples:\n" + body))
    assert [p.critique_request for p in original.principles] == [t.strip() for t in tricky]
    again = load_constitution(write(tmp_path, "again.yaml", original.to_yaml()))
    assert again.canonical() == original.canonical()
