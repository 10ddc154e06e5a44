"""What a benchmark row becomes: items the benchmark scores, and the pairs and groups the
judge labels.

A benchmark scores *items* (a RewardBench row, a best-of-4 row, an RM-Bench 3x3 row, one
human vote of MT-Bench); the judge labels *pairs* (two responses to one prompt) and, for
RewardBench 2's Ties subset, *groups* of several responses ranked all against all. Items
point at pairs by id, so a pair that several items share (MT-Bench votes on the same two
answers) is judged once.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from cai.records import Message, stable_id

Expected = Literal["a", "b", "tie"]
Scoring = Literal["pair", "best_of_n", "style_matrix", "ties", "vote"]
"""pair: one right answer; best_of_n: right only if the chosen beats every rejected;
style_matrix: RM-Bench's 3x3 chosen-style x rejected-style cells; ties: RewardBench 2's Ties
(several right answers, scored from a ranking); vote: one human vote that may be a tie."""


class JudgeItem(BaseModel):
    """One row of the table the judge stage reads (cai's sample rows)."""

    sample_id: str
    prompt: list[Message]
    responses: list[str]

    def sample_row(self, benchmark: str) -> dict:
        return {
            "prompt_id": self.sample_id,
            "prompt": self.prompt,
            "responses": self.responses,
            "finish_reasons": ["unknown"] * len(self.responses),
            "policy_model": f"benchmark:{benchmark}",
        }


class Comparison(BaseModel):
    """One pair an item needs, and which response the benchmark says is better."""

    sample_id: str
    expected: Expected
    cell: tuple[int, int] | None = None
    """RM-Bench: (chosen style, rejected style), 0 concise, 1 detailed, 2 detailed markdown."""


class BenchItem(BaseModel):
    item_id: str
    subset: str
    scoring: Scoring
    comparisons: list[Comparison] = Field(default_factory=list)
    group_id: str | None = None
    """Ties: the group of every response, judged as a ranking."""
    num_correct: int | None = None
    """Ties: the first `num_correct` responses of the group are right."""
    tie_kind: str | None = None
    """Ties: "ref" (one right answer) or "tied" (several), from ids like `tied:12`."""
    tie_prompt: int | None = None


class Malformed(BaseModel):
    """A row that does not fit the format, with where it is and why."""

    row: int
    line: int | None = None
    reason: str


class MappedRow(BaseModel):
    """What one row maps to (a row may need several pairs)."""

    items: list[BenchItem]
    pairs: list[JudgeItem] = Field(default_factory=list)


class Benchmark(BaseModel):
    """A whole benchmark, mapped: items to score, unique pairs and groups to judge."""

    name: str
    format: str
    source: str
    rows_read: int = 0
    items: list[BenchItem] = Field(default_factory=list)
    judged: dict[str, JudgeItem] = Field(default_factory=dict)
    malformed: list[Malformed] = Field(default_factory=list)
    rows_sampled_out: int = 0
    """Rows read and mapped but left out by --limit."""

    def add(self, mapped: MappedRow) -> None:
        self.items.extend(mapped.items)
        for item in mapped.pairs:
            self.judged.setdefault(item.sample_id, item)

    def keep(self, items: list[BenchItem]) -> None:
        """Keep only `items` and the pairs and groups they use (after sampling)."""
        self.rows_sampled_out += len(self.items) - len(items)
        used = {c.sample_id for i in items for c in i.comparisons}
        used |= {i.group_id for i in items if i.group_id}
        self.items = items
        self.judged = {k: v for k, v in self.judged.items() if k in used}


def pair_item(prompt: list[Message], a: str, b: str) -> JudgeItem:
    """A pair to judge, with an id from its content (so identical pairs are judged once)."""
    return JudgeItem(sample_id=stable_id("pair", prompt, a, b), prompt=prompt, responses=[a, b])


def oriented(item_id: str, chosen: str, rejected: str) -> tuple[str, str, Expected]:
    """(response a, response b, which is right), the chosen put first for half the items.

    The judge reads both orders anyway; alternating keeps the stored pairs free of any slot
    pattern, so a reader of the pairs table or a one-order judge cannot learn "a is right".
    """
    if int(stable_id("slot", item_id), 16) % 2 == 0:
        return chosen, rejected, "a"
    return rejected, chosen, "b"
