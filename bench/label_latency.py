"""Label latency: how fast the labelling page lets a keyboard rater go, against the server's
own time per answer.

A real uvicorn server (in a thread) serves a fresh database of synthetic pairs (responses of
~150 words with a code block, like model answers). Two clients label every pair:

- baseline: a plain HTTP client posting the same answers the page posts (no browser), the
  floor any page could reach on this server;
- candidate: the page itself in headless Chromium (the system's, never downloaded), driven
  with the keyboard through Selenium: a choice key, Enter, then wait until the next pair is on
  screen.

Reported (medians over interleaved repeats, a fresh rater and database each run): labels per
minute for both and their ratio; per answer, the browser's round trip for the POST (fetch
start to response end, from the Performance API), the server's own time for it (the
`Server-Timing` header: checks, the SQLite commit with fsync, the next pairs rendered), and
Enter to the next pair in the page, and the keypress-to-next-pair time the driver sees
(WebDriver round trips included). Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

from common import machine_facts, median, print_header, record_result, table, words


def synthetic_items(path: Path, n: int, seed: int = 0) -> Path:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        code = "```python\n" + "\n".join(f"x{k} = {rng.randint(0, 99)}" for k in range(6)) + "\n```"
        rows.append(
            {
                "prompt": f"Q{i}: " + words(rng, 25),
                "chosen": words(rng, 70) + "\n\n" + code + "\n\n" + words(rng, 60),
                "rejected": words(rng, 80) + "\n\n- " + words(rng, 12) + "\n- " + words(rng, 12),
                "prob_chosen": rng.uniform(0.5, 0.7),
                "source": "ai",
            }
        )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A fresh labelling database of `n` pairs served by uvicorn in a thread."""

    def __init__(self, root: Path, items: Path) -> None:
        import uvicorn

        from cai.label.app import create_app
        from cai.label.items import load_items
        from cai.label.store import LabelStore

        root.mkdir(parents=True)
        self.store = LabelStore(root / "labels.sqlite")
        self.store.update_settings(overlap=0.0)
        self.store.add_items(load_items(items)[0])
        self.token = self.store.add_rater("bench")[0].token
        self.app = create_app(self.store)
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False
        )
        self.web = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.web.run, daemon=True)
        self.thread.start()
        while not self.web.started:
            time.sleep(0.02)

    def close(self) -> None:
        self.web.should_exit = True
        self.thread.join(timeout=10)
        self.store.close()


def run_http(server: Server) -> dict:
    """Baseline: the page's requests from a plain HTTP client."""
    import re

    import httpx

    client = httpx.Client(base_url=server.base)
    page = client.get(f"/r/{server.token}")
    csrf = re.search(r'name="cai-csrf" content="([^"]+)"', page.text)[1]
    headers = {"X-CSRF-Token": csrf, "Origin": server.base}
    data = client.get(f"/r/{server.token}/api/queue").json()
    server_ms, choices, n = [], ["left", "right", "tie"], 0
    start = time.perf_counter()
    while data["items"]:
        reply = client.post(
            f"/r/{server.token}/api/answer",
            json={"item_id": data["items"][0]["item_id"], "choice": choices[n % 3], "seconds": 1},
            headers=headers,
        )
        server_ms.append(float(reply.headers["server-timing"].split("dur=")[1]))
        data = reply.json()
        n += 1
    seconds = time.perf_counter() - start
    client.close()
    return {"labels": n, "seconds": seconds, "server_ms": server_ms}


def run_browser(server: Server, driver) -> dict:
    """Candidate: the page in Chromium, keyboard only."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    state = "return [document.body.dataset.state, document.body.dataset.itemId]"
    driver.get(f"{server.base}/r/{server.token}")
    while driver.execute_script(state)[0] != "ready":
        time.sleep(0.01)
    driver.execute_script(
        "performance.clearResourceTimings(); performance.setResourceTimingBufferSize(10000);"
        # in-page clock: Enter pressed -> the next pair's HTML is in the page
        "window.__marks = []; window.__t0 = null;"
        "document.addEventListener('keydown', e => { if (e.key === 'Enter') "
        "window.__t0 = performance.now(); }, true);"
        "new MutationObserver(() => { if (window.__t0 !== null) { "
        "window.__marks.push(performance.now() - window.__t0); window.__t0 = null; } })"
        ".observe(document.body, {attributes: true, attributeFilter: ['data-item-id']});"
    )
    keys, per_label, n = ["1", "2", "t"], [], 0
    start = time.perf_counter()
    while True:
        current, before = driver.execute_script(state)
        if current == "done":
            break
        t0 = time.perf_counter()
        ActionChains(driver).send_keys(keys[n % 3]).send_keys(Keys.ENTER).perform()
        while True:
            now, item = driver.execute_script(state)
            if now in ("ready", "done") and item != before:
                break
        per_label.append((time.perf_counter() - t0) * 1000)
        n += 1
    seconds = time.perf_counter() - start
    entries = driver.execute_script(
        "return performance.getEntriesByType('resource')"
        ".filter(e => e.name.endsWith('/api/answer'))"
        ".map(e => [e.duration, e.serverTiming.length ? e.serverTiming[0].duration : null])"
    )
    return {
        "labels": n,
        "seconds": seconds,
        "keypress_to_next_ms": per_label,
        "enter_to_next_in_page_ms": driver.execute_script("return window.__marks"),
        "round_trip_ms": [e[0] for e in entries],
        "server_ms": [e[1] for e in entries if e[1] is not None],
    }


def compact(run: dict) -> dict:
    """One run's counts and the median of each per-answer series (results.json stays small)."""
    out = {"labels": run["labels"], "seconds": round(run["seconds"], 3)}
    for key, values in run.items():
        if isinstance(values, list) and values:
            out[f"{key}_median"] = round(statistics.median(values), 3)
    return out


def main() -> None:
    from cai.testing.browser import INSTALL_HINT, missing_browser_parts, start_headless_chromium

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="40 pairs, 2 repeats")
    args = parser.parse_args()
    if args.quick:
        args.pairs, args.repeats = 40, 2
    for path in missing_browser_parts():
        raise SystemExit(f"{path} is missing: {INSTALL_HINT}")

    root = Path(tempfile.mkdtemp(prefix="cai-bench-label-"))
    driver = start_headless_chromium(root / "profile")
    try:
        items = synthetic_items(root / "items.jsonl", args.pairs)
        print_header(f"label latency: {args.pairs} pairs, {args.repeats} repeats")
        runs: dict[str, list[dict]] = {"http": [], "browser": []}
        warm = Server(root / "warm", synthetic_items(root / "warm.jsonl", 5))
        run_browser(warm, driver)
        warm.close()
        for repeat in range(args.repeats):
            order = ["http", "browser"] if repeat % 2 == 0 else ["browser", "http"]
            for name in order:
                server = Server(root / f"{name}{repeat}", items)
                try:
                    result = run_http(server) if name == "http" else run_browser(server, driver)
                finally:
                    server.close()
                assert result["labels"] == args.pairs, result["labels"]
                runs[name].append(result)
                print(
                    f"repeat {repeat} {name}: {result['labels']} labels in "
                    f"{result['seconds']:.2f} s ({60 * result['labels'] / result['seconds']:.0f}/min)",
                    flush=True,
                )
    finally:
        driver.quit()
        shutil.rmtree(root, ignore_errors=True)

    def per_minute(name: str) -> float:
        return median([60 * r["labels"] / r["seconds"] for r in runs[name]])

    def pooled(name: str, key: str) -> list[float]:
        return [v for r in runs[name] for v in r[key]]

    def p95(values: list[float]) -> float:
        return statistics.quantiles(values, n=20)[-1]

    http_rate, browser_rate = per_minute("http"), per_minute("browser")
    server_http = statistics.median(pooled("http", "server_ms"))
    server_browser = statistics.median(pooled("browser", "server_ms"))
    round_trip = statistics.median(pooled("browser", "round_trip_ms"))
    in_page = pooled("browser", "enter_to_next_in_page_ms")
    driver_ms = pooled("browser", "keypress_to_next_ms")
    rows = [
        ["HTTP client, no browser (baseline)", f"{http_rate:.0f}", "1.00x", f"{server_http:.1f}"],
        [
            "the page in Chromium, keyboard driver",
            f"{browser_rate:.0f}",
            f"{browser_rate / http_rate:.2f}x",
            f"{server_browser:.1f}",
            f"{round_trip:.1f}",
            f"{statistics.median(in_page):.1f} (p95 {p95(in_page):.1f})",
            f"{statistics.median(driver_ms):.1f}",
        ],
    ]
    rows[0] += ["", "", ""]
    enter = statistics.median(in_page)
    details = "\n".join(
        [
            f"{args.pairs} synthetic pairs (responses of ~150 words, one with a code block), one "
            f"rater, a fresh database per run; medians of {args.repeats} interleaved repeats. "
            "Server time is the answer handler's own (`Server-Timing`): CSRF and origin checks, "
            "the SQLite commit (WAL, synchronous=FULL, so one fsync per answer) and the next two "
            "pairs rendered. The in-page time runs from the Enter keydown to the next pair's "
            "HTML being in the page (a MutationObserver); the driver's time adds the WebDriver "
            "round trips of the keypress and of polling for the change.",
            "",
            table(
                [
                    "client",
                    "labels/min",
                    "vs baseline",
                    "server ms/answer",
                    "POST round trip ms",
                    "Enter to next pair, in page, ms",
                    "keypress to next pair, driver, ms",
                ],
                rows,
            ),
            "",
            f"- Server time is {server_browser / round_trip:.0%} of the browser's round trip for "
            f"an answer and {server_browser / enter:.0%} of Enter-to-next-pair in the page; the "
            "rest is the browser (fetch, JSON, replacing the pair's HTML).",
            f"- The same handler takes {server_browser / server_http:.1f}x longer under the "
            "browser than under the plain client: Chromium and the driver's polling share the "
            f"{os.cpu_count()} cores with the server.",
            f"- The keyboard driver's labels/min is bounded by WebDriver, not by the page. A "
            f"person reading two responses takes seconds per pair; {enter:.0f} ms from Enter "
            "to the next pair is not what they wait for (the answer is committed before the "
            "page moves on, and the next pair is already loaded).",
        ]
    )
    print(details)
    record_result(
        "label_latency",
        {
            "title": "6. Label latency: the labelling page vs its server",
            "summary": [
                [
                    "labels/min, keyboard driver in Chromium / plain HTTP client",
                    f"{browser_rate / http_rate:.2f}x",
                ],
                [
                    "server time / Enter-to-next-pair in the page",
                    f"{server_browser / enter:.0%}",
                ],
                [
                    "keyboard driver labels/min; server ms per answer",
                    f"{browser_rate:.0f}/min; {server_browser:.1f} ms",
                ],
            ],
            "details": details,
            "machine": dict(sorted(machine_facts().items())),
            "raw": {name: [compact(r) for r in results] for name, results in runs.items()},
        },
    )


if __name__ == "__main__":
    main()
