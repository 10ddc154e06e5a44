"""Headless Chromium for the labelling page's browser test and latency benchmark: the system's
browser (never downloaded), driven through Selenium and chromedriver, started the same way by
both so their numbers and screenshots describe the same browser."""

from __future__ import annotations

from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
INSTALL_HINT = "make browser"  # apt-get install chromium chromium-driver (see the Makefile)

HEADLESS_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
)


def missing_browser_parts() -> list[Path]:
    """The system binaries Chromium needs here that are absent; empty when it can start."""
    return [path for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]


def start_headless_chromium(profile: Path):
    """A Selenium driver of headless Chromium keeping its profile in `profile`, so runs never
    share state; the caller quits it. Needs selenium (the dev extra) and both binaries."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*HEADLESS_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
