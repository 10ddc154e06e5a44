"""The labelling page in a real browser: headless Chromium from the system (never downloaded),
driven with the keyboard only through Selenium and chromedriver.

It labels five pairs, reloads, undoes, finishes, and checks the export; a response carrying
`<img onerror>` and `<script>` must show as text and run nothing; it writes a screenshot to
the test's tmp dir and a copy to docs/img/label-page.png for the docs.
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from cai.label.export import answers_to_rows
from cai.label.items import load_items
from cai.label.store import LabelStore, choice_to_screen
from cai.testing.browser import INSTALL_HINT, missing_browser_parts, start_headless_chromium

DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "img" / "label-page.png"
XSS = '<img src=x onerror="window.__pwned=1"> and <script>window.__pwned=2</script>'

PAIRS = [
    (
        "How do I reverse a list in Python without changing the original?",
        "Use slicing, which returns a new list:\n\n```python\nnumbers = [1, 2, 3]\n"
        "backwards = numbers[::-1]\nprint(backwards)  # [3, 2, 1]\n```\n\n"
        "`reversed(numbers)` also works if you only need to **iterate** once.",
        "Call `numbers.reverse()`.\n\nThis reverses the list *in place*, so the original "
        "order is lost.",
    ),
    (
        "Is it safe to mix bleach and vinegar for cleaning?",
        "No. It releases chlorine gas.",
        "Yes, it cleans better.",
    ),
    ("Summarise: the meeting moved to Friday.", f"The meeting is now on Friday. {XSS}", "Friday."),
    ("Translate 'thank you' to French.", "Merci.", "Gracias."),
    ("What is 17 * 3?", "51", "41"),
    ("Name a prime number above 10.", "11", "12"),
    ("Give one tip for better sleep.", "Keep a regular bedtime.", "Drink coffee at night."),
]


def _need_browser():
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.skip("selenium is not installed (it is in the dev extra: pip install -e '.[dev]')")
    for path in missing_browser_parts():
        pytest.skip(
            f"{path} is missing and could not be installed here; install it with "
            f"`{INSTALL_HINT}` (.ci/run does this in CI)"
        )


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    import uvicorn

    from cai.label.app import create_app

    rows = [
        {"prompt": p, "chosen": c, "rejected": r, "principle": "helpfulness"} for p, c, r in PAIRS
    ]
    items_path = tmp_path / "items.jsonl"
    items_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    items, _ = load_items(items_path)
    store = LabelStore(tmp_path / "labels.sqlite")
    store.update_settings(overlap=0.0)
    store.add_items(items)
    rater, _ = store.add_rater("ann")
    port = _free_port()
    config = uvicorn.Config(create_app(store), host="127.0.0.1", port=port, log_level="warning")
    web = uvicorn.Server(config)
    thread = threading.Thread(target=web.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not web.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert web.started, "uvicorn did not start"
    yield store, f"http://127.0.0.1:{port}/r/{rater.token}"
    web.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def browser(tmp_path):
    _need_browser()
    driver = start_headless_chromium(tmp_path / "chromium-profile")
    yield driver
    driver.quit()


def _wait(driver, condition, timeout=15):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(lambda d: condition(d))


def _state(driver):
    return driver.execute_script(
        "return [document.body.dataset.state, document.body.dataset.itemId]"
    )


def _press(driver, *keys):
    from selenium.webdriver.common.action_chains import ActionChains

    chain = ActionChains(driver)
    for key in keys:
        chain.send_keys(key)
    chain.perform()


def _answer(driver, *keys):
    """Press keys on the current pair, then wait until the next pair (or the end) shows."""
    from selenium.webdriver.common.keys import Keys

    _, before = _state(driver)
    _press(driver, *keys, Keys.ENTER)
    _wait(driver, lambda d: _state(d)[0] in ("ready", "done") and _state(d)[1] != before)
    return before


def test_keyboard_labelling_reload_undo_finish_and_export(server, browser, tmp_path):
    from selenium.webdriver.common.by import By

    store, url = server
    driver = browser
    driver.get(url)
    _wait(driver, lambda d: _state(d)[0] == "ready")
    text = driver.find_element(By.ID, "progress-text").text
    assert text == "0 / 7"
    assert driver.find_element(By.ID, "principle-text").text == "helpfulness"
    # every control has a label, and the keyboard help is on the page
    unlabelled = driver.execute_script(
        "return [...document.querySelectorAll('input')].filter(i => !i.labels.length).length"
    )
    assert unlabelled == 0
    shot = tmp_path / "label-page.png"
    python_pair = next(i.item_id for _, i, _ in store.items() if "reverse a list" in str(i.prompt))
    seen_markup = []

    def look():
        """Check the pair on screen; photograph the one with code for the docs."""
        seen_markup.append("window.__pwned=2" in driver.find_element(By.ID, "pair").text)
        if _state(driver)[1] == python_pair:
            driver.save_screenshot(str(shot))

    pressed: dict[str, str] = {}
    for keys, screen in ((("1",), "left"), (("2",), "right"), (("t",), "tie")):
        look()
        pressed[_answer(driver, *keys)] = screen
    assert driver.switch_to.active_element.get_attribute("id") == "conversation-title"
    look()
    pressed[_answer(driver, "b", "r", "both are wrong")] = "both_bad"  # Enter in the reason box
    look()
    skipped = _answer(driver, "s")
    assert driver.find_element(By.ID, "progress-text").text == "5 / 7"

    driver.refresh()  # resumes where the rater was
    _wait(driver, lambda d: _state(d)[0] == "ready")
    assert driver.find_element(By.ID, "progress-text").text == "5 / 7"
    sixth = _state(driver)[1]
    assert sixth not in pressed and sixth != skipped

    _press(driver, "u")  # undo the skip: that pair comes back with "skip" selected
    _wait(driver, lambda d: _state(d) == ["ready", skipped])
    assert driver.find_element(By.CSS_SELECTOR, 'input[value="skip"]').is_selected()
    assert driver.find_element(By.ID, "progress-text").text == "4 / 7"
    pressed[_answer(driver, "1")] = "left"
    while _state(driver)[0] != "done":
        look()
        pressed[_answer(driver, "2")] = "right"
    assert driver.find_element(By.ID, "progress-text").text == "7 / 7"

    # the response with markup showed it as text, and nothing in it ran
    assert any(seen_markup)
    assert driver.execute_script("return window.__pwned === undefined")
    assert not driver.find_elements(By.CSS_SELECTOR, "#pair img, #pair script")

    rows, skips = answers_to_rows(store.live_answers())
    assert skips == 0 and len(rows) == 7
    assert {
        row["item_id"]: choice_to_screen(row["choice"], row["shown_left"]) for row in rows
    } == pressed
    assert next(r for r in rows if r["choice"] == "both_bad")["reason"] == "both are wrong"
    assert all(r["seconds"] is not None and r["seconds"] >= 0 for r in rows)

    assert shot.stat().st_size > 10_000
    DOCS_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, DOCS_SCREENSHOT)

    driver.set_window_size(390, 844)  # a phone: the two responses stack
    driver.refresh()
    _wait(driver, lambda d: _state(d)[0] == "done")
    _press(driver, "u")
    _wait(driver, lambda d: _state(d)[0] == "ready")
    left_top, right_top = driver.execute_script(
        "return ['left', 'right'].map(id => document.getElementById(id).getBoundingClientRect().top)"
    )
    assert right_top > left_top
    driver.save_screenshot(str(tmp_path / "label-page-phone.png"))
