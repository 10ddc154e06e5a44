"""The labelling web API through FastAPI's TestClient, and a real server killed with SIGKILL."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter

import httpx
import pytest
from fastapi.testclient import TestClient

from cai.label.app import create_app
from cai.label.items import load_items
from cai.label.store import LabelStore

XSS = '<img src=x onerror="window.__pwned=1"> <script>window.__pwned=2</script>'


def write_items(path, n=12, **extra):
    rows = [
        {
            "prompt": [{"role": "user", "content": f"Question {i}? {XSS}"}],
            "chosen": [
                {"role": "assistant", "content": f"**good** answer {i}\n\n```py\nx = {i}\n```"}
            ],
            "rejected": [{"role": "assistant", "content": f"bad answer {i} {XSS}"}],
            "prob_chosen": 0.8,
            "source": "ai",
            **extra,
        }
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def make_store(tmp_path, n=12, raters=("ann", "bob"), **settings):
    items, _ = load_items(write_items(tmp_path / "items.jsonl", n))
    store = LabelStore(tmp_path / "labels.sqlite")
    store.update_settings(**settings)
    store.add_items(items)
    tokens = {name: store.add_rater(name)[0].token for name in raters}
    return store, tokens


class Rater:
    """One browser tab: its own cookie jar and the CSRF token of its page."""

    def __init__(self, app, token):
        self.client = TestClient(app)
        self.token = token
        page = self.client.get(f"/r/{token}")
        assert page.status_code == 200
        self.page = page
        self.csrf = re.search(r'name="cai-csrf" content="([^"]+)"', page.text).group(1)

    def queue(self):
        return self.client.get(f"/r/{self.token}/api/queue").json()

    def post(self, path, body, **headers):
        headers.setdefault("X-CSRF-Token", self.csrf)
        return self.client.post(f"/r/{self.token}/api/{path}", json=body, headers=headers)

    def answer(self, choice="left", item_id=None, **extra):
        item_id = item_id or self.queue()["items"][0]["item_id"]
        return self.post("answer", {"item_id": item_id, "choice": choice, **extra})


def test_page_and_queue_are_blind_escaped_and_prefetched(tmp_path):
    store, tokens = make_store(tmp_path)
    ann = Rater(create_app(store), tokens["ann"])
    csp = ann.page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert (
        'src="/static/label.js' in ann.page.text and "http" not in ann.page.text.split("<body")[1]
    )
    data = ann.queue()
    assert len(data["items"]) == 2  # the pair shown and the next one, prefetched
    assert data["progress"] == {"done": 0, "remaining": 12, "total": 12}
    item = data["items"][0]
    blob = json.dumps(data)
    assert "ai" not in item and "0.8" not in blob and "prob" not in blob  # blind
    html = item["conversation_html"] + item["left_html"] + item["right_html"]
    assert "<script" not in html and "<img" not in html
    assert "&lt;script&gt;window.__pwned=2&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=&quot;window.__pwned=1&quot;&gt;" in html
    assert "<strong>good</strong>" in html and '<code class="language-py">' in html
    static = ann.client.get("/static/label.js")
    assert static.status_code == 200 and "innerHTML" in static.text


def test_show_ai_reveals_the_ai_label_in_screen_terms(tmp_path):
    store, tokens = make_store(tmp_path)
    ann = Rater(create_app(store, show_ai=True), tokens["ann"])
    item = ann.queue()["items"][0]
    assert item["ai"]["p_left"] in (0.8, 0.2)


def test_tokens_csrf_origin_and_content_type(tmp_path):
    store, tokens = make_store(tmp_path)
    app = create_app(store)
    client = TestClient(app)
    assert client.get("/r/not-a-token").status_code == 404
    assert client.get("/r/not-a-token/api/queue").status_code == 404
    assert client.get("/admin/not-the-token").status_code == 404
    assert "personal link" in client.get("/").text and tokens["ann"] not in client.get("/").text
    ann = Rater(app, tokens["ann"])
    item_id = ann.queue()["items"][0]["item_id"]
    body = {"item_id": item_id, "choice": "left"}
    assert ann.post("answer", body, **{"X-CSRF-Token": "forged"}).status_code == 403
    assert ann.post("answer", body, **{"X-CSRF-Token": ""}).status_code == 403
    cross = ann.post("answer", body, Origin="http://evil.example")
    assert cross.status_code == 403 and cross.json()["error"] == "origin"
    assert ann.post("answer", body, **{"Sec-Fetch-Site": "cross-site"}).status_code == 403
    form = ann.client.post(
        f"/r/{ann.token}/api/answer",
        content="item_id=x&choice=left",
        headers={"Content-Type": "application/x-www-form-urlencoded", "X-CSRF-Token": ann.csrf},
    )
    assert form.status_code == 415
    # ann's CSRF token is tied to ann's session: bob's page in another browser cannot use it
    bob = Rater(app, tokens["bob"])
    stolen = bob.post("answer", body, **{"X-CSRF-Token": ann.csrf})
    assert stolen.status_code == 403
    assert store.live_answers() == []
    ok = ann.post("answer", body, Origin="http://testserver", **{"Sec-Fetch-Site": "same-origin"})
    assert ok.status_code == 200 and ok.json()["saved"]["item_id"] == item_id
    assert "app;dur=" in ok.headers["server-timing"]


def test_answer_undo_second_tab_and_finish(tmp_path):
    store, tokens = make_store(tmp_path, n=4, overlap=0.0)
    app = create_app(store)
    tab1, tab2 = Rater(app, tokens["ann"]), Rater(app, tokens["ann"])
    first = tab1.queue()["items"][0]["item_id"]
    assert tab2.queue()["items"][0]["item_id"] == first  # both tabs show the same pair
    saved = tab1.answer("left", first, reason="  clearer\nand shorter ", seconds=3.5)
    assert saved.status_code == 200
    data = saved.json()
    assert data["progress"]["done"] == 1 and data["items"][0]["item_id"] != first
    refused = tab2.answer("right", first)  # the stale tab answers the same pair
    assert refused.status_code == 409 and "first answer is kept" in refused.json()["message"]
    assert refused.json()["items"][0]["item_id"] == data["items"][0]["item_id"]  # resynced
    [answer] = store.live_answers()
    assert answer["reason"] == "clearer and shorter" and answer["seconds"] == 3.5

    undo = tab2.post("undo", {})  # undo works from any tab, on the rater's last answer
    assert undo.json()["undone"] == {
        "item_id": first,
        "choice": "left",
        "reason": "clearer and shorter",
    }
    assert undo.json()["items"][0]["item_id"] == first and undo.json()["progress"]["done"] == 0
    assert tab1.answer("tie", first).status_code == 200
    assert tab1.post("answer", {"item_id": first, "choice": "maybe"}).status_code in (400, 409)
    while items := tab1.queue()["items"]:
        assert tab1.answer("skip", items[0]["item_id"]).status_code == 200
    final = tab1.queue()
    assert final["items"] == [] and final["progress"] == {"done": 4, "remaining": 0, "total": 4}
    assert Counter(a["choice"] for a in store.live_answers()) == {"tie": 1, "skip": 3}
    assert tab1.post("undo", {}).json()["undone"]["choice"] == "skip"


def test_concurrent_raters_over_http(tmp_path):
    store, tokens = make_store(tmp_path, n=30, raters=("ann", "bob", "cy"), per_pair=1)
    app = create_app(store)
    raters = [Rater(app, tokens[name]) for name in ("ann", "bob", "cy")]
    raters.append(Rater(app, tokens["ann"]))  # ann's second tab
    failures = []

    def work(rater):
        for _ in range(40):
            items = rater.queue()["items"]
            if not items:
                return
            status = rater.answer("right", items[0]["item_id"]).status_code
            if status not in (200, 409):
                failures.append(status)

    threads = [threading.Thread(target=work, args=(r,)) for r in raters]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not failures
    answers = store.live_answers()
    keys = [(a["rater_id"], a["item"].item_id) for a in answers]
    assert len(keys) == len(set(keys))
    per_item = Counter(a["item"].item_id for a in answers)
    assert len(per_item) == 30
    overlap = {item.item_id for _, item, o in store.items() if o}
    assert all(per_item[i] == (3 if i in overlap else 1) for i in per_item)


def test_admin_page_shows_progress_agreement_and_bias(tmp_path):
    store, tokens = make_store(tmp_path, n=10, raters=("ann", "bob"), overlap=1.0)
    app = create_app(store)
    ann, bob = Rater(app, tokens["ann"]), Rater(app, tokens["bob"])
    for name, rater, flip in (("ann", ann, False), ("bob", bob, True)):
        while items := rater.queue()["items"]:
            item = store.queue(name, 1)[0]
            # ann always picks the AI's choice; bob agrees on half
            ai_side = "left" if (item.item.ai_prob_a > 0.5) == (item.left_side == "a") else "right"
            other = "right" if ai_side == "left" else "left"
            choice = other if flip and item.idx % 2 else ai_side
            assert rater.answer(choice, items[0]["item_id"], seconds=2.0).status_code == 200
    stats = TestClient(app).get(f"/admin/{store.admin_token}/stats.json").json()
    assert stats["labels"] == 20 and stats["inter_rater"]["n_items"] == 10
    [pair] = stats["inter_rater"]["pairwise"]
    assert pair["n"] == 10 and pair["agreement"] == 0.5
    assert stats["ai_human"]["n"] == 20 and stats["ai_human"]["accuracy"] == 0.75
    assert 0.0 <= stats["left_share"] <= 1.0 and stats["median_seconds"] == 2.0
    page = TestClient(app).get(f"/admin/{store.admin_token}")
    assert page.status_code == 200 and "Fleiss" in page.text and "ann" in page.text


def test_open_access_lists_links_only_when_asked(tmp_path):
    store, tokens = make_store(tmp_path)
    client = TestClient(create_app(store, open_access=True))
    index = client.get("/").text
    assert f"/r/{tokens['ann']}" in index and f"/admin/{store.admin_token}" in index


# ---- a real server, killed -----------------------------------------------------------------------
def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(args, port, env):
    proc = subprocess.Popen(
        [sys.executable, "-m", "cai.cli.app", "label", "serve", *args, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {proc.stdout.read()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("server did not start")


def test_kill_9_loses_no_saved_answer_and_restart_resumes(tmp_path):
    items = write_items(tmp_path / "items.jsonl", n=8)
    db = tmp_path / "labels.sqlite"
    port = _free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = _serve([str(items), "--db", str(db), "--rater", "ann", "--overlap", "0"], port, env)
    try:
        token = LabelStore(db).raters()[0].token
        base = f"http://127.0.0.1:{port}"
        client = httpx.Client(base_url=base)
        page = client.get(f"/r/{token}")
        csrf = re.search(r'name="cai-csrf" content="([^"]+)"', page.text).group(1)
        headers = {"X-CSRF-Token": csrf, "Origin": base}
        saved = []
        data = client.get(f"/r/{token}/api/queue").json()
        for choice in ("left", "right", "tie"):
            item_id = data["items"][0]["item_id"]
            reply = client.post(
                f"/r/{token}/api/answer",
                json={"item_id": item_id, "choice": choice},
                headers=headers,
            )
            assert reply.status_code == 200
            saved.append(item_id)
            data = reply.json()
        next_up = data["items"][0]["item_id"]
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    assert [a["item"].item_id for a in LabelStore(db).live_answers()] == saved

    port2 = _free_port()
    proc = _serve(["--db", str(db)], port2, env)  # no ITEMS: resume what the database holds
    try:
        base = f"http://127.0.0.1:{port2}"
        client2 = httpx.Client(base_url=base, cookies=client.cookies)
        data = client2.get(f"/r/{token}/api/queue").json()
        assert data["progress"]["done"] == 3 and data["items"][0]["item_id"] == next_up
        reply = client2.post(  # the page open before the kill keeps working (same CSRF secret)
            f"/r/{token}/api/answer",
            json={"item_id": next_up, "choice": "both_bad"},
            headers={"X-CSRF-Token": csrf, "Origin": base},
        )
        assert reply.status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
    choices = [a["choice"] for a in LabelStore(db).live_answers()]
    assert len(choices) == 4 and choices[-1] == "both_bad"


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20"])
def test_no_tokens_is_refused_off_loopback(tmp_path, host):
    from typer.testing import CliRunner

    from cai.cli.app import app

    items = write_items(tmp_path / "items.jsonl", n=2)
    result = CliRunner().invoke(
        app,
        [
            "label",
            "serve",
            str(items),
            "--db",
            str(tmp_path / "l.sqlite"),
            "--host",
            host,
            "--no-tokens",
        ],
    )
    assert result.exit_code == 2 and "loopback" in result.output
    assert not (tmp_path / "l.sqlite").exists()
