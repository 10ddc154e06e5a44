"""AI preference datasets on disk: TRL's conversational preference rows with explicit types.

The preferences stage (`cai.stages.preferences`) streams its rows into a JSONL file; this
module turns that file into the dataset in any format (`cai.tables`), pushes it to the
Hub, and reads a written one back with the same column types.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cai import tables
from cai.tables import DatasetFormat


def preference_features():
    """Explicit column types, so empty or all-null columns still load with the right schema."""
    from datasets import Features, List, Value

    message = {"role": Value("string"), "content": Value("string")}
    return Features(
        {
            "prompt": List(message),
            "chosen": List(message),
            "rejected": List(message),
            "prompt_id": Value("string"),
            "pair_id": Value("string"),
            "prob_chosen": Value("float64"),
            "n_judgments": Value("int64"),
            "orders_agree": Value("bool"),
            "principles": List(Value("string")),
            "judge_model": Value("string"),
            "constitution_name": Value("string"),
            "constitution_hash": Value("string"),
            "source": Value("string"),
            "method": Value("string"),
            "prob_chosen_by_order": List(Value("float64")),
            "prob_chosen_by_principle": List(Value("float64")),
            "score_margin": Value("float64"),
            "rater_id": Value("string"),
            "decided_by_tier": Value("int64"),
            "judge_members": List(Value("string")),
            "prob_chosen_by_member": List(Value("float64")),
        }
    )


def _rows(rows_path: str | Path) -> Iterator[dict[str, Any]]:
    return tables.stream_rows(rows_path)


def load_rows_dataset(rows_path: str | Path, cache_dir: str | Path):
    """The rows JSONL as a `datasets.Dataset` streamed into an Arrow file in `cache_dir`
    (memory-mapped, not in memory); the caller keeps `cache_dir` while it uses the dataset."""
    return tables.mapped_dataset(_rows(rows_path), preference_features(), cache_dir)


def write_dataset(
    rows_path: str | Path,
    destination: str | Path,
    fmt: DatasetFormat,
    card: str | None = None,
    cache_dir: str | Path | None = None,
) -> Path:
    """Write the rows in `fmt` to `destination` atomically (a rerun replaces it whole).

    save_to_disk -> a directory; parquet -> a .parquet file; jsonl -> a .jsonl file (`disk`
    is accepted for save_to_disk). The dataset card goes into the directory, or beside the
    file as <name>.README.md. See `cai.tables.write_dataset`.
    """
    return tables.write_dataset(
        _rows(rows_path),
        destination,
        fmt,
        card=card,
        features=preference_features(),
        scratch_dir=cache_dir,
    )


def push_to_hub(rows_path: str | Path, repo_id: str, card: str, private: bool = True) -> None:
    """Upload the dataset and its card (needs a Hugging Face token in the environment)."""
    import tempfile

    with tempfile.TemporaryDirectory() as cache:
        dataset = load_rows_dataset(rows_path, cache)
        dataset.push_to_hub(repo_id, private=private)
        del dataset
    from huggingface_hub import DatasetCard

    DatasetCard(card).push_to_hub(repo_id, repo_type="dataset")


def load_preferences(path: str | Path):
    """Load a dataset this module wrote, in any of its formats, as a `datasets.Dataset`
    (columns of a JSONL file typed as preference rows; see `cai.tables.load_table`)."""
    return tables.load_table(path, features=preference_features())
