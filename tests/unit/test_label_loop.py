"""The routed-pairs loop end to end: a scripted AI run -> `cai route export` -> the labelling
app (in process) -> answers from two raters -> `cai label export` -> `cai agree`, `cai mix`,
and two steps of `cai train reward` on the mix."""

from __future__ import annotations

import hashlib
import json
import re

import pytest
import yaml
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from cai.backends.base import ChoiceRequest
from cai.backends.scripted import ScriptedBackend
from cai.cli.app import app
from cai.label.app import create_app
from cai.label.items import ai_probabilities, load_items
from cai.label.store import LabelStore
from cai.pipeline import load_pipeline_config, run_pipeline
from cai.tables import read_rows

pytestmark = pytest.mark.slow
run = CliRunner().invoke


def content_score(request: ChoiceRequest) -> list[float]:
    text = "".join(m["content"] for m in request.messages or []) + request.assistant_prefix
    digest = hashlib.sha256(text.encode()).digest()
    return [digest[0] / 64, digest[1] / 64]


def ai_dataset(tmp_path):
    with (tmp_path / "prompts.jsonl").open("w") as handle:
        for i in range(12):
            handle.write(json.dumps({"prompt": f"Question number {i}?"}) + "\n")
    config = {
        "name": "loop",
        "output_dir": str(tmp_path / "out"),
        "prompts": {"path": "prompts.jsonl"},
        "constitution": "default",
        "policy": {"kind": "scripted", "model": "loop"},
        "sample": {"n": 2, "max_tokens": 16},
        "judge": {"principles_per_pair": 2},
        "chunk_size": 6,
    }
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(config))
    backend = ScriptedBackend(score=content_score, model_id="scripted-loop")
    result = run_pipeline(load_pipeline_config(tmp_path / "pipeline.yaml"), policy_backend=backend)
    return result.dataset


def test_route_label_export_agree_mix_train(tmp_path, tiny_reward_dir):
    ai = ai_dataset(tmp_path)
    sheet = tmp_path / "to_label.jsonl"
    routed = run(app, ["route", "export", "--ai", str(ai), "--budget", "8", "-o", str(sheet)])
    assert routed.exit_code == 0, routed.output

    items, report = load_items(sheet)
    assert report.kinds == {"sheet": 8}
    db = tmp_path / "labels.sqlite"
    store = LabelStore(db)
    store.update_settings(overlap=0.25)
    store.add_items(items)
    assert store.set_ai_labels(ai_probabilities(ai)) == 8  # what `serve --ai` does
    web = create_app(store)
    for name in ("ann", "bob"):
        token = store.add_rater(name)[0].token
        client = TestClient(web)
        csrf = re.search(r'name="cai-csrf" content="([^"]+)"', client.get(f"/r/{token}").text)[1]
        data = client.get(f"/r/{token}/api/queue").json()
        while data["items"]:
            pending = store.queue(name, 1)[0]
            ai_left = (pending.item.ai_prob_a > 0.5) == (pending.left_side == "a")
            choice = "left" if ai_left == (name == "ann") else "right"  # bob disagrees
            reply = client.post(
                f"/r/{token}/api/answer",
                json={"item_id": data["items"][0]["item_id"], "choice": choice, "seconds": 2},
                headers={"X-CSRF-Token": csrf},
            )
            assert reply.status_code == 200
            data = reply.json()
    stats = TestClient(web).get(f"/admin/{store.admin_token}/stats.json").json()
    assert stats["items_labelled"] == 8 and stats["inter_rater"]["n_items"] == 2
    assert stats["ai_human"]["n"] == 10

    human = tmp_path / "human.jsonl"
    exported = run(app, ["label", "export", "--db", str(db), "-o", str(human)])
    assert exported.exit_code == 0 and "wrote 10 human labels" in exported.output

    agree = run(app, ["agree", "--ai", str(ai), "--human", str(human), "-o", str(tmp_path / "rep")])
    assert agree.exit_code == 0, agree.output
    report = json.loads((tmp_path / "rep" / "agreement.json").read_text())
    assert report["n_pairs"] == 8 and report["inter_rater"]["n_pairs"] == 2

    mixed = tmp_path / "mix.jsonl"
    mix = run(app, ["mix", "--ai", str(ai), "--human", str(human), "-o", str(mixed)])
    assert mix.exit_code == 0, mix.output
    assert "8 AI rows overridden" in mix.output
    rows = read_rows(mixed)
    assert sum(r["source"] == "human" for r in rows) == 8

    (tmp_path / "rm.yaml").write_text(
        f"model: {tiny_reward_dir}\ntrain_data: {mixed}\noutput_dir: {tmp_path / 'rm'}\n"
        "per_device_train_batch_size: 4\nsave_steps: 100\nlogging_steps: 1\ndtype: float32\n"
    )
    trained = run(app, ["train", "reward", "-c", str(tmp_path / "rm.yaml"), "--max-steps", "2"])
    assert trained.exit_code == 0, trained.output
    assert (tmp_path / "rm" / "config.json").is_file()
