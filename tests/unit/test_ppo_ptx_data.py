"""PPO-ptx data: rows read from either SFT layout, batches drawn by step number alone."""

from __future__ import annotations

import json

import pytest

from cai.tables import InputFormatError
from cai.train.ppo.ptx import ptx_indices, read_sft_pairs


def test_batches_depend_only_on_the_update_and_cover_each_row_once_per_pass():
    one_pass = ptx_indices(10, 0, 5, 0, 1, seed=3) + ptx_indices(10, 1, 5, 0, 1, seed=3)
    assert sorted(one_pass) == list(range(10))
    # two processes with 5 rows each draw what one process with 10 rows draws
    two = ptx_indices(10, 4, 5, 0, 2, seed=3) + ptx_indices(10, 4, 5, 1, 2, seed=3)
    assert two == ptx_indices(10, 4, 10, 0, 1, seed=3)
    assert ptx_indices(10, 7, 4, 0, 1, seed=3) == ptx_indices(10, 7, 4, 0, 1, seed=3)


def test_reads_messages_and_prompt_completion_tables(tmp_path):
    messages = tmp_path / "sft.jsonl"
    chat = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    messages.write_text(json.dumps({"messages": chat}) + "\n")
    assert read_sft_pairs(str(messages)) == [([chat[0]], "hello")]
    pairs = tmp_path / "pc.jsonl"
    pairs.write_text(json.dumps({"prompt": "q", "completion": "a"}) + "\n")
    assert read_sft_pairs(str(pairs)) == [([{"role": "user", "content": "q"}], "a")]


def test_a_table_without_sft_columns_is_refused_with_the_fix(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps({"text": "q"}) + "\n")
    with pytest.raises(InputFormatError, match="'messages' column") as err:
        read_sft_pairs(str(path))
    assert "x.jsonl" in str(err.value) and "cai revise" in str(err.value)
