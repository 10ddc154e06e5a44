"""cai.tables: one reader and one writer of datasets on disk, in every format."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel

import cai.tables.dataset
from cai.errors import CaiError, InputError, OutputDirError
from cai.tables import (
    DatasetFormat,
    InputFormatError,
    RowError,
    card_path,
    is_hub_id,
    iter_rows,
    load_table,
    mapped_dataset,
    normalize_format,
    read_rows,
    write_dataset,
    write_splits,
    write_table,
)

ROWS = [
    {
        "prompt": [{"role": "user", "content": "q0"}],
        "chosen": [{"role": "assistant", "content": "=good, +1"}],
        "prob_chosen": 0.75,
        "n": 1,
        "tags": ["a", "b"],
        "note": "'quoted",
    },
    {
        "prompt": [{"role": "user", "content": "q1 ünïcode"}],
        "chosen": [{"role": "assistant", "content": "fine"}],
        "prob_chosen": 1.0,
        "n": 2,
        "tags": [],
        "note": "",
    },
]
NAMES = {"save_to_disk": "ds", "disk": "ds_disk", "parquet": "ds.parquet", "jsonl": "ds.jsonl"}


def _features():
    from datasets import Features, List, Value

    message = {"role": Value("string"), "content": Value("string")}
    return Features(
        {
            "prompt": List(message),
            "chosen": List(message),
            "prob_chosen": Value("float64"),
            "n": Value("int64"),
            "tags": List(Value("string")),
            "note": Value("string"),
        }
    )


def _leftovers(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


# ---- round trips ----------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["save_to_disk", "disk", "parquet", "jsonl"])
def test_every_format_round_trips(tmp_path, fmt):
    written = write_dataset(ROWS, tmp_path / NAMES[fmt], fmt, card="# card")
    assert written == tmp_path / NAMES[fmt]
    assert read_rows(written) == ROWS
    assert [r.row for r in iter_rows(written)] == [1, 2]
    assert load_table(written).to_list() == ROWS
    assert card_path(written, fmt).read_text() == "# card"
    assert written.is_dir() == (fmt in ("save_to_disk", "disk"))
    assert _leftovers(tmp_path) == []  # no temporary files or Arrow scratch left behind


@pytest.mark.parametrize("fmt", ["save_to_disk", "parquet", "jsonl"])
def test_rows_with_a_fixed_schema_round_trip_streamed(tmp_path, fmt):
    written = write_dataset(iter(ROWS), tmp_path / NAMES[fmt], fmt, features=_features())
    loaded = load_table(written, features=_features())
    assert loaded.to_list() == ROWS
    assert loaded.features["prob_chosen"].dtype == "float64"
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("fmt", ["save_to_disk", "parquet", "jsonl"])
def test_empty_datasets_round_trip_with_their_columns(tmp_path, fmt):
    written = write_dataset([], tmp_path / NAMES[fmt], fmt, features=_features())
    assert read_rows(written) == []
    loaded = load_table(written, features=_features())
    assert len(loaded) == 0 and loaded.column_names == list(_features())
    with pytest.raises(InputFormatError, match="holds no rows"):
        load_table(written, features=_features(), allow_empty=False)


def test_an_empty_dataset_without_columns_cannot_be_saved_to_disk(tmp_path):
    with pytest.raises(InputError, match="no columns cannot be saved with save_to_disk"):
        write_dataset([], tmp_path / "ds", "save_to_disk")
    assert not (tmp_path / "ds").exists() and _leftovers(tmp_path) == []
    assert read_rows(write_dataset([], tmp_path / "e.jsonl", "jsonl")) == []


@pytest.mark.parametrize("fmt", ["save_to_disk", "disk", "parquet", "jsonl"])
def test_splits_round_trip_and_empty_splits_keep_their_columns(tmp_path, fmt):
    directory = write_splits({"train": [], "flagged": ROWS}, tmp_path / "sft", fmt, card="# c")
    assert load_table(directory, "flagged").to_list() == ROWS
    assert read_rows(directory, "flagged") == ROWS
    train = load_table(directory)  # train is the default split
    assert len(train) == 0
    if fmt != "jsonl":  # an empty JSONL file has no columns to keep
        assert train.column_names == list(ROWS[0])
    assert (directory / "README.md").read_text() == "# c"
    with pytest.raises(InputFormatError, match=r"no split 'test' \(splits: .*flagged"):
        load_table(directory, "test")


def test_empty_splits_other_than_train_are_left_out(tmp_path):
    directory = write_splits({"train": ROWS, "flagged": []}, tmp_path / "sft", "jsonl")
    assert sorted(p.name for p in directory.iterdir()) == ["train.jsonl"]
    directory = write_splits({"train": ROWS, "flagged": []}, tmp_path / "sft2", "save_to_disk")
    assert json.loads((directory / "dataset_dict.json").read_text())["splits"] == ["train"]


def test_csv_sheets_round_trip_formula_cells_exactly(tmp_path):
    rows = [{"id": "1", "text": '=HYPERLINK("x")', "label": "-"}, {"id": "2", "text": "'@a"}]
    written = write_table(rows, tmp_path / "sheet.csv")
    raw = written.read_text()
    assert "'=HYPERLINK" in raw and "''@a" in raw  # escaped on disk
    assert read_rows(written) == [{**rows[0]}, {**rows[1], "label": ""}]
    assert load_table(written).to_list() == read_rows(written)


def test_write_table_picks_the_format_from_the_name(tmp_path):
    assert (write_table(ROWS, tmp_path / "d") / "dataset_info.json").is_file()
    assert read_rows(write_table(ROWS, tmp_path / "p.parquet")) == ROWS
    assert read_rows(write_table(ROWS, tmp_path / "j.json")) == ROWS  # JSON Lines
    with pytest.raises(InputFormatError, match=r"cannot write '\.txt' files"):
        write_table(ROWS, tmp_path / "x.txt")


# ---- the format vocabulary ------------------------------------------------------------------
def test_disk_is_the_old_name_of_save_to_disk():
    class Config(BaseModel):
        format: DatasetFormat = "save_to_disk"

    assert normalize_format("disk") == "save_to_disk"
    assert Config(format="disk").format == "save_to_disk"
    assert Config(format="parquet").format == "parquet"
    with pytest.raises(ValueError, match="save_to_disk"):
        Config(format="arrow")
    with pytest.raises(InputError, match="unknown dataset format 'arrow'"):
        normalize_format("arrow")

    from cai.stages.preferences import PreferenceConfig

    assert PreferenceConfig(format="disk").format == "save_to_disk"


# ---- guards ---------------------------------------------------------------------------------
def test_a_foreign_file_in_a_dataset_directory_survives_a_rewrite(tmp_path):
    target = write_dataset(ROWS, tmp_path / "ds", "save_to_disk")
    (target / "notes.txt").write_text("mine")
    with pytest.raises(OutputDirError, match=r"notes\.txt.*which cai did not write"):
        write_dataset(ROWS[:1], target, "save_to_disk")
    assert (target / "notes.txt").read_text() == "mine"
    assert read_rows(target) == ROWS  # the old dataset is untouched
    assert _leftovers(tmp_path) == []


def test_a_foreign_file_in_a_splits_directory_survives_a_rewrite(tmp_path):
    target = write_splits({"train": ROWS}, tmp_path / "sft", "jsonl")
    (target / "keep.csv").write_text("a\n1\n")
    with pytest.raises(OutputDirError, match=r"keep\.csv"):
        write_splits({"train": ROWS[:1]}, target, "parquet")
    assert (target / "keep.csv").read_text() == "a\n1\n"
    assert read_rows(target) == ROWS and _leftovers(tmp_path) == []


def test_a_rewrite_in_another_format_replaces_the_directory_whole(tmp_path):
    target = write_splits({"train": ROWS}, tmp_path / "sft", "jsonl")
    write_splits({"train": ROWS[:1]}, target, "parquet")
    assert sorted(p.name for p in target.iterdir()) == ["train.parquet"]
    assert read_rows(target) == ROWS[:1]


# ---- bad training data ----------------------------------------------------------------------
def _reader_error(path) -> RowError:
    return next(r.data for r in iter_rows(path) if isinstance(r.data, RowError))


def test_non_utf8_jsonl_fails_as_the_reader_does(tmp_path):
    path = tmp_path / "prefs.jsonl"
    path.write_bytes(b'{"prompt": "ok"}\n\n{"prompt": "caf\xe9"}\n')
    with pytest.raises(RowError) as info:
        load_table(path)
    err = info.value
    assert (err.file, err.row, err.line) == (str(path), 2, 3)
    assert "not UTF-8" in str(err) and str(err) == str(_reader_error(path))


def test_malformed_json_names_file_row_and_column(tmp_path):
    path = tmp_path / "prefs.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}\n{"a": [1, 2\n')
    with pytest.raises(CaiError) as info:
        load_table(path)
    assert (info.value.file, info.value.row) == (str(path), 3)
    assert str(info.value).startswith(f"{path}:3:") and "not valid JSON" in str(info.value)


def test_a_value_of_the_wrong_type_names_its_row_and_column(tmp_path):
    path = tmp_path / "prefs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in [{"p": 0.5}, {"p": 1}, {"p": "high"}]))
    with pytest.raises(InputFormatError) as info:
        load_table(path)
    assert (info.value.file, info.value.row, info.value.key) == (str(path), 3, "p")
    assert "'high' does not fit the column" in str(info.value)
    with pytest.raises(InputFormatError) as typed:
        from datasets import Features, Value

        load_table(path, features=Features({"p": Value("float64")}))
    assert (typed.value.row, typed.value.key) == (3, "p") and "double" in str(typed.value)


def test_types_are_inferred_over_every_row_not_the_first_batch(tmp_path, monkeypatch):
    monkeypatch.setattr(cai.tables.dataset, "_BATCH_ROWS", 2)
    path = tmp_path / "rows.jsonl"
    rows = [{"a": None, "b": 1}, {"a": None, "b": 2}, {"a": "x", "b": 2.5}, {"b": 3}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    loaded = load_table(path)
    assert loaded["a"] == [None, None, "x", None] and loaded["b"] == [1.0, 2.0, 2.5, 3.0]
    path.write_text('{"a": 1}\n{"a": 2}\n{"a": "x"}\n')
    with pytest.raises(InputFormatError, match=r"a column changes type within rows 3-3"):
        load_table(path)


def test_csv_training_data_has_formula_escapes_stripped(tmp_path):
    path = tmp_path / "prefs.csv"
    path.write_bytes(b"\xef\xbb\xbfprompt,chosen\n'=1+1,'+good\nq,\"a, b\"\n")
    loaded = load_table(path)
    assert loaded.to_list() == [
        {"prompt": "=1+1", "chosen": "+good"},
        {"prompt": "q", "chosen": "a, b"},
    ]
    (tmp_path / "bad.csv").write_bytes(b"prompt,chosen\nq,a\nq,a,extra\n")
    with pytest.raises(RowError) as info:
        load_table(tmp_path / "bad.csv")
    assert info.value.row == 2 and "3 fields, more than the header's 2 columns" in str(info.value)


def test_unreadable_sources_are_one_clear_error(tmp_path):
    (tmp_path / "x.parquet").write_bytes(b"PAR1 not parquet")
    with pytest.raises(InputFormatError, match=r"x\.parquet: not a readable Parquet file"):
        load_table(tmp_path / "x.parquet")
    (tmp_path / "loose").mkdir()
    (tmp_path / "loose" / "a.txt").write_text("x")
    with pytest.raises(InputFormatError, match=r"loose: holds no dataset \(found: a\.txt\)"):
        load_table(tmp_path / "loose")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "dataset_info.json").write_text("{")
    with pytest.raises(InputFormatError, match="broken: not a readable save_to_disk dataset"):
        load_table(tmp_path / "broken")
    with pytest.raises(InputFormatError, match=r"missing\.jsonl: no such file or directory"):
        load_table(tmp_path / "missing.jsonl")


def test_a_fixed_schema_refuses_an_unknown_column_naming_its_row(tmp_path):
    from datasets import Features, Value

    features = Features({"a": Value("string")})
    with pytest.raises(InputFormatError) as info:
        mapped_dataset([{"a": "x"}, {"a": "y", "b": 1}], features, tmp_path)
    assert (info.value.row, info.value.key) == (2, "b")
    dataset = mapped_dataset(({"a": str(i)} for i in range(3)), features, tmp_path / "m")
    assert dataset["a"] == ["0", "1", "2"] and dataset.cache_files


# ---- the Hub --------------------------------------------------------------------------------
def test_hub_ids_are_told_apart_from_local_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert is_hub_id("owner/name") and is_hub_id("Org-1/data.v2")
    assert not is_hub_id("runs/prefs.jsonl")  # a missing local file stays a local file
    assert not is_hub_id("/abs/name") and not is_hub_id("name") and not is_hub_id("../up")
    (tmp_path / "owner").mkdir()
    assert not is_hub_id("owner/name")  # a local directory `owner`: a local path
    with pytest.raises(InputFormatError, match="owner/name: no such file or directory"):
        load_table("owner/name")
    write_dataset(ROWS, tmp_path / "owner" / "name", "save_to_disk")
    assert read_rows("owner/name") == ROWS


def test_an_unreachable_hub_dataset_is_one_clear_error(monkeypatch):
    import datasets.config

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    with pytest.raises(InputFormatError) as info:
        next(iter_rows("someone/no-such-dataset"))
    text = str(info.value)
    assert text.startswith("someone/no-such-dataset: no such file or directory, and the ")
    assert "Hugging Face Hub cannot be reached" in text and "HF_HUB_OFFLINE" in text
    assert "\n" not in text and info.value.__cause__ is None
    with pytest.raises(InputFormatError, match="Hugging Face Hub cannot be reached"):
        load_table("someone/no-such-dataset")


# ---- one reading error ----------------------------------------------------------------------
def test_readers_of_training_data_raise_the_one_reading_error(tmp_path):
    import cai.train.preference
    import cai.train.sft
    from cai.sft_data import load_split

    for module in (cai.train.preference, cai.train.sft):
        assert module.InputFormatError is InputFormatError
    assert issubclass(InputFormatError, CaiError)
    with pytest.raises(InputFormatError):
        load_split(tmp_path / "nope")


def test_preference_rows_stream_with_each_row_checked(tmp_path):
    from cai.human.pairs import PairDataError
    from cai.human.storage import iter_preference_rows

    good = {"prompt": "q", "chosen": "a", "rejected": "b", "prob_chosen": 0.9}
    path = write_table([good, {**good, "prob_chosen": 2.0}], tmp_path / "h.jsonl")
    rows = iter_preference_rows(path)
    assert next(rows) == good  # the first row comes before the second is read
    with pytest.raises(PairDataError) as info:
        next(rows)
    assert (info.value.file, info.value.row, info.value.key) == (str(path), 2, "prob_chosen")
