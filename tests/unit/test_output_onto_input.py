"""Outputs never eat inputs: every command that reads and writes refuses an output that is one of
its inputs (by any spelling: `./x`, a symlink, a trailing slash), holds one, or lies inside one,
and an output directory that is an existing file, before it reads or writes anything.

Each case runs the real command in a directory of inputs and checks: exit code 2, one line
naming the path, and every byte and entry of the directory as it was. No model loads: the check
runs first.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cai.cli.app import app
from cai.debug import set_debug
from cai.errors import OutputDirError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PAIR = {"prompt": "Hi?", "chosen": "Hello.", "rejected": "Go away.", "prob_chosen": 0.9}


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """Inputs of every kind: a preference table, a model directory, a regular file, a symlink
    to the table, a dataset directory, pipeline and loop files with their prompts."""
    (tmp_path / "data.jsonl").write_text(json.dumps(PAIR) + "\n", encoding="utf-8")
    (tmp_path / "preferences.jsonl").write_text(json.dumps(PAIR) + "\n", encoding="utf-8")
    (tmp_path / "human.jsonl").write_text(json.dumps(PAIR) + "\n", encoding="utf-8")
    (tmp_path / "link.jsonl").symlink_to("data.jsonl")
    (tmp_path / "notadir").write_text("a user's file\n", encoding="utf-8")
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}\n", encoding="utf-8")
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    (dataset / "train.jsonl").write_text(json.dumps(PAIR) + "\n", encoding="utf-8")
    for name in ("quickstart.yaml", "loop.yaml", "prompts.jsonl", "heldout.jsonl"):
        shutil.copy(EXAMPLES / name, tmp_path / name)
    for stage_dir in ("samples", "judgments"):  # a run's stage directories, holding a user file
        (tmp_path / "run" / stage_dir).mkdir(parents=True)
        shutil.copy(tmp_path / "data.jsonl", tmp_path / "run" / stage_dir / "mine.jsonl")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _snapshot(root: Path) -> dict[str, str]:
    """Every entry under `root`: a file's sha256, a link's target, a directory's mark."""
    seen = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        if path.is_symlink():
            seen[key] = "-> " + str(path.readlink())
        elif path.is_dir():
            seen[key] = "dir"
        else:
            seen[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return seen


TRAIN = ("train", "dpo", "--model", "model", "--data")
ONLINE = ("--model", "model", "--prompts", "prompts.jsonl", "--out")

# (case id, command line, text the error names)
CASES = [
    # mix: the AI dataset, every spelling of it, and the human one
    ("mix-out-is-ai", ["mix", "--ai", "data.jsonl", "--human", "human.jsonl", "--out", "data.jsonl"], "data.jsonl"),
    ("mix-dot-slash", ["mix", "--ai", "data.jsonl", "--human", "human.jsonl", "--out", "./data.jsonl"], "data.jsonl"),
    ("mix-symlink", ["mix", "--ai", "data.jsonl", "--human", "human.jsonl", "--out", "link.jsonl"], "link.jsonl"),
    ("mix-out-is-human", ["mix", "--ai", "data.jsonl", "--human", "human.jsonl", "--out", "human.jsonl"], "human.jsonl"),
    ("mix-out-holds-input", ["mix", "--ai", "dataset/train.jsonl", "--human", "human.jsonl", "--out", "dataset"], "dataset/train.jsonl"),
    ("mix-out-inside-input-dir", ["mix", "--ai", "dataset", "--human", "human.jsonl", "--out", "dataset/mixed.jsonl"], "dataset"),
    # human imports
    ("import-human", ["import-human", "data.jsonl", "--out", "./data.jsonl"], "data.jsonl"),
    ("import-human-report", ["import-human", "data.jsonl.import-report.json", "--out", "data.jsonl"], "data.jsonl.import-report.json"),
    ("route-import", ["route", "import", "data.jsonl", "--out", "link.jsonl"], "data.jsonl"),
    ("route-export", ["route", "export", "--ai", "data.jsonl", "--budget", "1", "--out", "data.jsonl"], "data.jsonl"),
    ("agree-out-is-ai", ["agree", "--ai", "data.jsonl", "--human", "human.jsonl", "--out", "data.jsonl"], "data.jsonl"),
    ("agree-out-is-file", ["agree", "--ai", "data.jsonl", "--human", "human.jsonl", "--out", "notadir"], "notadir"),
    # label
    ("label-export", ["label", "export", "--db", "data.jsonl", "--out", "./data.jsonl"], "data.jsonl"),
    ("label-import-labels", ["label", "import-labels", "data.jsonl", "--out", "link.jsonl"], "data.jsonl"),
    ("label-export-items", ["label", "export-items", "data.jsonl", "--format", "label-studio", "--out", "data.jsonl"], "data.jsonl"),
    ("label-serve-db-is-items", ["label", "serve", "data.jsonl", "--db", "data.jsonl"], "data.jsonl"),
    # the labelling pipeline: run, sample, judge, revise
    ("sample-out-is-prompts", ["sample", "data.jsonl", "--out", "./data.jsonl", "--backend", "scripted"], "data.jsonl"),
    ("sample-out-is-file", ["sample", "prompts.jsonl", "--out", "notadir", "--backend", "scripted"], "notadir"),
    ("sample-out-under-file", ["sample", "prompts.jsonl", "--out", "notadir/run", "--backend", "scripted"], "notadir"),
    ("judge-out-is-samples", ["judge", "data.jsonl", "--out", "data.jsonl/", "--backend", "scripted"], "data.jsonl"),
    ("judge-out-in-samples-dir", ["judge", "dataset", "--out", "dataset/run", "--backend", "scripted"], "dataset"),
    ("revise-out-is-prompts", ["revise", "prompts.jsonl", "--out", "prompts.jsonl", "--backend", "scripted"], "prompts.jsonl"),
    ("sample-prompts-in-samples-dir", ["sample", "run/samples/mine.jsonl", "--out", "run", "--backend", "scripted"], "run/samples/mine.jsonl"),
    ("judge-samples-in-judgments-dir", ["judge", "run/judgments/mine.jsonl", "--out", "run/", "--backend", "scripted"], "run/judgments/mine.jsonl"),
    ("judge-relabels-its-own-dataset", ["judge", "preferences.jsonl", "--out", ".", "--backend", "scripted", "--format", "jsonl"], "preferences.jsonl"),
    ("run-out-is-prompts", ["run", "quickstart.yaml", "--out", "prompts.jsonl"], "prompts.jsonl"),
    ("run-out-is-file", ["run", "quickstart.yaml", "--out", "notadir"], "notadir"),
    # trainers
    ("dpo-out-is-data", [*TRAIN, "data.jsonl", "--out", "data.jsonl"], "data.jsonl"),
    ("dpo-out-is-model", [*TRAIN, "data.jsonl", "--out", "model/"], "model"),
    ("dpo-out-in-model", [*TRAIN, "data.jsonl", "--out", "model/run"], "model"),
    ("dpo-out-holds-data", [*TRAIN, "dataset/train.jsonl", "--out", "dataset"], "dataset/train.jsonl"),
    ("dpo-out-is-file", [*TRAIN, "data.jsonl", "--out", "notadir"], "notadir"),
    ("sft-out-is-dataset", ["train", "sft", "--model", "model", "--dataset", "dataset", "--out", "./dataset"], "dataset"),
    ("reward-out-is-data", ["train", "reward", "--model", "model", "--data", "data.jsonl", "--out", "link.jsonl"], "data.jsonl"),
    ("kto-out-is-data", ["train", "kto", "--model", "model", "--data", "data.jsonl", "--out", "data.jsonl"], "data.jsonl"),
    ("orpo-out-is-data", ["train", "orpo", "--model", "model", "--data", "data.jsonl", "--out", "data.jsonl"], "data.jsonl"),
    ("grpo-out-is-prompts", ["train", "grpo", *ONLINE, "prompts.jsonl"], "prompts.jsonl"),
    ("rloo-out-holds-model", ["train", "rloo", *ONLINE, "."], "model"),
    ("ppo-out-is-prompts", ["train", "ppo", *ONLINE, "./prompts.jsonl"], "prompts.jsonl"),
    # eval, loop
    ("winrate-out-is-prompts", ["eval", "winrate", "--prompts", "prompts.jsonl", "--policy", "model", "--baseline", "model", "--judge", "model", "--out", "prompts.jsonl"], "prompts.jsonl"),
    ("winrate-out-is-file", ["eval", "winrate", "--prompts", "prompts.jsonl", "--policy", "model", "--baseline", "model", "--judge", "model", "--out", "notadir"], "notadir"),
    ("loop-out-is-prompts", ["loop", "loop.yaml", "--out", "prompts.jsonl"], "prompts.jsonl"),
    ("loop-out-is-file", ["loop", "loop.yaml", "--out", "notadir"], "notadir"),
    # constitution tools
    ("induce-onto-pairs", ["constitution", "induce", "data.jsonl", "--out", "./data.jsonl", "--force"], "data.jsonl"),
    ("induce-report-onto-pairs", ["constitution", "induce", "x.report.json", "--out", "x.yaml", "--force"], "x.report.json"),
    ("lint-out-is-human", ["constitution", "lint", "default", "--human", "data.jsonl", "--out", "data.jsonl"], "data.jsonl"),
    ("lint-out-is-file", ["constitution", "lint", "default", "--out", "notadir"], "notadir"),
    ("constitution-test-junit", ["constitution", "test", "default", "data.jsonl", "--junit", "data.jsonl"], "data.jsonl"),
    ("constitution-new-onto-parent", ["constitution", "new", "x", "--extends", "loop.yaml", "--out", "loop.yaml", "--force"], "loop.yaml"),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "named"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_an_output_onto_an_input_is_refused_before_anything_is_written(workdir, argv, named):
    if named.endswith("report.json"):  # a report file made an input for this case
        (workdir / named).write_text(json.dumps(PAIR) + "\n", encoding="utf-8")
    before = _snapshot(workdir)
    set_debug(False)
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert named in lines[0] and ("Choose another" in lines[0] or "choose another" in lines[0])
    assert "Traceback" not in result.output
    assert _snapshot(workdir) == before


def test_the_python_api_refuses_too(workdir):
    """The check lives in the library functions, so pipeline files and notebooks get it."""
    from cai.evaluate import WinRateConfig, run_win_rate
    from cai.human.audit import audit
    from cai.pipeline import load_pipeline_config, run_pipeline
    from cai.train.preference import DPOTrainConfig, train_dpo

    shutil.copy(workdir / "prompts.jsonl", workdir / "run" / "pairs.jsonl")
    before = _snapshot(workdir)
    config = load_pipeline_config("quickstart.yaml", [], {"output_dir": "./prompts.jsonl"})
    with pytest.raises(OutputDirError, match=r"prompts\.jsonl"):
        run_pipeline(config)
    dpo = DPOTrainConfig(model="model", train_data="data.jsonl", output_dir=str(workdir))
    with pytest.raises(OutputDirError, match="holds the input"):
        train_dpo(dpo)
    with pytest.raises(OutputDirError, match=r"human\.jsonl"):
        audit("data.jsonl", "human.jsonl", "./human.jsonl")
    scripted = {"kind": "scripted"}
    winrate = WinRateConfig(
        prompts="run/pairs.jsonl",
        policy=scripted,
        baseline=scripted,
        judge=scripted,
        output_dir="run/samples/..",
    )
    with pytest.raises(OutputDirError, match=r"pairs\.jsonl"):  # the report's pairs.jsonl
        run_win_rate(winrate)
    assert _snapshot(workdir) == before


def test_a_new_output_beside_the_inputs_is_accepted(workdir):
    """The check refuses only real overlaps: a fresh --out next to the inputs works."""
    set_debug(False)
    result = CliRunner().invoke(
        app, ["mix", "--ai", "data.jsonl", "--human", "human.jsonl", "--out", "mixed.jsonl"]
    )
    assert result.exit_code == 0, result.output
    assert (workdir / "mixed.jsonl").is_file()


def test_a_hard_link_and_a_trailing_slash_name_the_same_input(tmp_path):
    from cai.paths import refuse_output_onto_input

    data = tmp_path / "data.jsonl"
    data.write_text("{}\n", encoding="utf-8")
    twin = tmp_path / "twin.jsonl"
    twin.hardlink_to(data)
    with pytest.raises(OutputDirError, match="is the same path"):
        refuse_output_onto_input({"--out": twin}, {"--ai": data})
    (tmp_path / "dir").mkdir()
    with pytest.raises(OutputDirError, match="is the same path"):
        refuse_output_onto_input({"--out": f"{tmp_path}/dir/"}, {"--data": tmp_path / "dir"})


def test_the_directory_lock_refuses_a_file_in_the_way(tmp_path):
    """Any writer that locks its output directory says so in one line, file untouched."""
    from cai.files import DirectoryLock

    blocker = tmp_path / "notadir"
    blocker.write_text("mine\n", encoding="utf-8")
    for target in (blocker, blocker / "run"):
        with pytest.raises(OutputDirError, match="is an existing file"):
            DirectoryLock(target).acquire()
    assert blocker.read_text(encoding="utf-8") == "mine\n"
