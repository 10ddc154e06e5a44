"""One mapper per published judge-benchmark format, and the guess of which one a file is.

Each mapper turns one row into the items the benchmark scores and the pairs (or groups) the
judge must label, or raises `BadRow` saying why the row does not fit; `load_benchmark`
counts those rows and keeps going. The shapes, as published:

- rewardbench   allenai/reward-bench: prompt, chosen, rejected (texts), subset, id
- rewardbench2  allenai/reward-bench-2: id, prompt, chosen (list; several only in Ties),
                rejected (list, 3 for best-of-4), num_correct, subset
- rmbench       THU-KEG/RM-Bench: id, prompt, chosen (3 styles), rejected (3 styles), domain
- judgebench    ScalerLab/JudgeBench: pair_id, original_id, source, question, response_model,
                response_A, response_B, label ("A>B" / "B>A")
- mtbench       lmsys/mt_bench_human_judgments: question_id, model_a, model_b, winner
                (model_a / model_b / tie / tie (bothbad)), judge, conversation_a,
                conversation_b, turn
- hh            Anthropic/hh-rlhf: chosen, rejected (full "\\n\\nHuman: ... \\n\\nAssistant: ..."
                transcripts)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cai.errors import InputError
from cai.human.imports import RowProblem, parse_hh_transcript, split_shared_prompt
from cai.human.pairs import PairDataError, prompt_messages
from cai.judge_eval.items import (
    BenchItem,
    Comparison,
    Expected,
    JudgeItem,
    MappedRow,
    oriented,
    pair_item,
)
from cai.records import Message, stable_id


class BadRow(InputError):
    """One row does not fit its format; the message says why."""


class UnknownFormatError(InputError):
    """No known benchmark format fits the rows."""


def _text(row: dict[str, Any], column: str) -> str:
    value = row.get(column)
    if not isinstance(value, str) or not value.strip():
        raise BadRow(f"`{column}` must be a non-empty text (got {type(value).__name__})")
    return value


def _texts(row: dict[str, Any], column: str) -> list[str]:
    value = row.get(column)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise BadRow(f"`{column}` must be a non-empty list of texts")
    if not all(v.strip() for v in value):
        raise BadRow(f"`{column}` holds an empty response")
    return value


def _prompt(value: Any) -> list[Message]:
    try:
        return prompt_messages(value)
    except PairDataError as err:
        raise BadRow(str(err)) from None


def _item_id(row: dict[str, Any], number: int, *columns: str) -> str:
    for column in columns:
        if row.get(column) not in (None, ""):
            return str(row[column])
    return f"row-{number}"


def _pair(item_id: str, subset: str, prompt: list[Message], chosen: str, rejected: str):
    if chosen == rejected:
        raise BadRow("chosen and rejected are the same text; there is nothing to compare")
    a, b, expected = oriented(item_id, chosen, rejected)
    pair = pair_item(prompt, a, b)
    item = BenchItem(
        item_id=item_id,
        subset=subset,
        scoring="pair",
        comparisons=[Comparison(sample_id=pair.sample_id, expected=expected)],
    )
    return MappedRow(items=[item], pairs=[pair])


# ---- the mappers ------------------------------------------------------------------------------
def map_rewardbench(row: dict[str, Any], number: int) -> MappedRow:
    item_id = _item_id(row, number, "id")
    return _pair(
        item_id,
        str(row.get("subset") or "all"),
        _prompt(row.get("prompt")),
        _text(row, "chosen"),
        _text(row, "rejected"),
    )


def _ties_id(item_id: str) -> tuple[str | None, int | None]:
    kind, _, number = item_id.partition(":")
    if kind in ("ref", "tied") and number.isdigit():
        return kind, int(number)
    return None, None


def map_rewardbench2(row: dict[str, Any], number: int) -> MappedRow:
    item_id = _item_id(row, number, "id")
    subset = str(row.get("subset") or "all")
    prompt = _prompt(row.get("prompt"))
    chosen, rejected = _texts(row, "chosen"), _texts(row, "rejected")
    if subset.lower() == "ties":
        responses = chosen + rejected
        if len(set(responses)) < len(responses):
            raise BadRow("a Ties row lists the same response twice")
        num_correct = row.get("num_correct", len(chosen))
        if num_correct != len(chosen):
            raise BadRow(f"num_correct is {num_correct} but `chosen` holds {len(chosen)}")
        group = JudgeItem(
            sample_id=stable_id("group", prompt, responses), prompt=prompt, responses=responses
        )
        kind, tie_prompt = _ties_id(item_id)
        item = BenchItem(
            item_id=item_id,
            subset=subset,
            scoring="ties",
            group_id=group.sample_id,
            num_correct=len(chosen),
            tie_kind=kind,
            tie_prompt=tie_prompt,
        )
        return MappedRow(items=[item], pairs=[group])
    if len(chosen) != 1:
        raise BadRow(f"{len(chosen)} chosen responses outside the Ties subset (best-of-n has one)")
    pairs, comparisons = [], []
    for index, wrong in enumerate(rejected):
        if wrong == chosen[0]:
            raise BadRow(f"rejected[{index}] is the chosen text")
        a, b, expected = oriented(f"{item_id}/{index}", chosen[0], wrong)
        pair = pair_item(prompt, a, b)
        pairs.append(pair)
        comparisons.append(Comparison(sample_id=pair.sample_id, expected=expected))
    item = BenchItem(item_id=item_id, subset=subset, scoring="best_of_n", comparisons=comparisons)
    return MappedRow(items=[item], pairs=pairs)


def map_rmbench(row: dict[str, Any], number: int) -> MappedRow:
    item_id = _item_id(row, number, "id")
    prompt = _prompt(row.get("prompt"))
    chosen, rejected = _texts(row, "chosen"), _texts(row, "rejected")
    if len(chosen) != 3 or len(rejected) != 3:
        raise BadRow(
            f"RM-Bench rows hold 3 chosen and 3 rejected styles ({len(chosen)}, {len(rejected)})"
        )
    pairs, comparisons = [], []
    for i, good in enumerate(chosen):
        for j, bad in enumerate(rejected):
            if good == bad:
                raise BadRow(f"chosen[{i}] and rejected[{j}] are the same text")
            a, b, expected = oriented(f"{item_id}/{i}{j}", good, bad)
            pair = pair_item(prompt, a, b)
            pairs.append(pair)
            comparisons.append(Comparison(sample_id=pair.sample_id, expected=expected, cell=(i, j)))
    item = BenchItem(
        item_id=item_id,
        subset=str(row.get("domain") or "all"),
        scoring="style_matrix",
        comparisons=comparisons,
    )
    return MappedRow(items=[item], pairs=pairs)


_JUDGEBENCH_LABELS: dict[str, Expected] = {"A>B": "a", "A>>B": "a", "B>A": "b", "B>>A": "b"}
_JUDGEBENCH_SOURCES = (
    ("mmlu-pro", "knowledge"),
    ("livebench-reasoning", "reasoning"),
    ("livebench-math", "math"),
    ("livecodebench", "coding"),
)


def judgebench_category(source: str) -> str:
    """JudgeBench's four categories from a row's `source` (e.g. mmlu-pro-law: knowledge)."""
    for prefix, category in _JUDGEBENCH_SOURCES:
        if source.startswith(prefix):
            return category
    return source or "all"


def map_judgebench(row: dict[str, Any], number: int) -> MappedRow:
    item_id = _item_id(row, number, "pair_id", "original_id")
    label = str(row.get("label", "")).strip()
    if label not in _JUDGEBENCH_LABELS:
        raise BadRow(f"label {label!r} is not one of {', '.join(_JUDGEBENCH_LABELS)}")
    a, b = _text(row, "response_A"), _text(row, "response_B")
    if a == b:
        raise BadRow("response_A and response_B are the same text")
    pair = pair_item(_prompt(row.get("question")), a, b)
    item = BenchItem(
        item_id=item_id,
        subset=judgebench_category(str(row.get("source") or "")),
        scoring="pair",
        comparisons=[Comparison(sample_id=pair.sample_id, expected=_JUDGEBENCH_LABELS[label])],
    )
    return MappedRow(items=[item], pairs=[pair])


_MT_WINNERS: dict[str, Expected] = {
    "model_a": "a",
    "model_b": "b",
    "tie": "tie",
    "tie (bothbad)": "tie",
}


def _conversation(row: dict[str, Any], column: str) -> list[Message]:
    value = row.get(column)
    if not isinstance(value, list) or len(value) < 2:
        raise BadRow(f"`{column}` must be a list of at least two messages")
    out = []
    for message in value:
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise BadRow(f"`{column}` holds a message without text content")
        out.append({"role": str(message.get("role", "")), "content": message["content"]})
    return out


def _transcript(messages: list[Message]) -> str:
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in messages)


def map_mtbench(row: dict[str, Any], number: int) -> MappedRow:
    """One human (or GPT-4) vote. Turn 1: the first question and the two first answers.
    Turn 2 is judged on whole dialogues (the two models' first answers differ, so there is
    no shared prompt): the prompt is the first question, each response the rest of that
    model's dialogue as a transcript, as the MT-Bench judge prompt shows both dialogues."""
    winner = str(row.get("winner", "")).strip()
    if winner not in _MT_WINNERS:
        raise BadRow(f"winner {winner!r} is not one of {', '.join(_MT_WINNERS)}")
    turn = row.get("turn", 1)
    conv_a, conv_b = _conversation(row, "conversation_a"), _conversation(row, "conversation_b")
    if turn not in (1, 2):
        raise BadRow(f"turn {turn!r} is not 1 or 2")
    if conv_a[0] != conv_b[0] or conv_a[0]["role"] != "user":
        raise BadRow("the two conversations do not start with the same user question")
    prompt = [conv_a[0]]
    if turn == 1:
        a, b = conv_a[1]["content"], conv_b[1]["content"]
    else:
        if len(conv_a) < 4 or len(conv_b) < 4:
            raise BadRow("a turn-2 vote needs two turns in each conversation")
        a, b = _transcript(conv_a[1:4]), _transcript(conv_b[1:4])
    if not a.strip() or not b.strip():
        raise BadRow("an answer is empty")
    if a == b:
        raise BadRow("the two answers are the same text")
    pair = pair_item(prompt, a, b)
    qid = row.get("question_id", f"row-{number}")
    item = BenchItem(
        item_id=f"{qid}/{row.get('model_a')}/{row.get('model_b')}/{turn}/{row.get('judge')}/{number}",
        subset=f"turn{turn}",
        scoring="vote",
        comparisons=[Comparison(sample_id=pair.sample_id, expected=_MT_WINNERS[winner])],
    )
    return MappedRow(items=[item], pairs=[pair])


def map_hh(row: dict[str, Any], number: int) -> MappedRow:
    try:
        chosen = parse_hh_transcript(row.get("chosen"))  # type: ignore[arg-type]
        rejected = parse_hh_transcript(row.get("rejected"))  # type: ignore[arg-type]
        prompt, good, bad = split_shared_prompt(chosen, rejected)
    except RowProblem as err:
        raise BadRow(err.message) from None
    if not good.strip() or not bad.strip():
        raise BadRow("an answer is empty")
    item_id = _item_id(row, number, "id")
    return _pair(item_id, str(row.get("subset") or "all"), prompt, good, bad)


Mapper = Callable[[dict[str, Any], int], MappedRow]
MAPPERS: dict[str, Mapper] = {
    "rewardbench": map_rewardbench,
    "rewardbench2": map_rewardbench2,
    "rmbench": map_rmbench,
    "judgebench": map_judgebench,
    "mtbench": map_mtbench,
    "hh": map_hh,
}
FORMATS = tuple(MAPPERS)


# ---- which format a row is --------------------------------------------------------------------
def row_format(row: dict[str, Any]) -> str | None:
    """The format whose columns this row has (the most specific first), or None."""
    keys = set(row)
    if {"response_A", "response_B", "label"} <= keys:
        return "judgebench"
    if {"conversation_a", "conversation_b", "winner"} <= keys:
        return "mtbench"
    if {"chosen", "rejected"} <= keys:
        texts = all(
            isinstance(row[k], list) and all(isinstance(v, str) for v in row[k])
            for k in ("chosen", "rejected")
        )
        if texts and "domain" in keys:
            return "rmbench"
        if texts and "prompt" in keys:
            return "rewardbench2"
        if isinstance(row["chosen"], str) and "prompt" in keys:
            return "rewardbench"
        if isinstance(row["chosen"], str) and "Human:" in row["chosen"]:
            return "hh"
    return None


def detect_format(rows: list[dict[str, Any]], source: str) -> str:
    """The format most of the first rows have; an error listing the columns when none fits."""
    votes: dict[str, int] = {}
    for row in rows:
        fmt = row_format(row)
        if fmt is not None:
            votes[fmt] = votes.get(fmt, 0) + 1
    if votes:
        return max(votes, key=lambda f: votes[f])
    columns = sorted({k for row in rows for k in row})
    raise UnknownFormatError(
        f"no known judge-benchmark format fits these rows (columns: {', '.join(columns) or 'none'})",
        file=source,
        fix=f"Name it with --format ({' | '.join(FORMATS)}), or reshape the rows; "
        "docs/judge-eval.md lists the columns of each.",
    )
