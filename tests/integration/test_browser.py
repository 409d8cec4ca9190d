"""The live page in a real browser: Debian's headless Chromium, driven by Selenium with
Debian's ChromeDriver (nothing downloaded), loads the page of ``focusmon watch demo``, sees
the frame load, the figure change, and the state badge turn to ``obstructed`` when the
demo covers its lens. A screenshot is kept in ``test-artifacts/`` (or
``$FOCUSMON_TEST_ARTIFACTS``)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from focusmon.config import parse
from focusmon.pipeline import Watcher
from focusmon.sinks import MetricsEndpoint

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
needs_browser = pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None,
    reason="Debian's chromium and chromium-driver are not installed (CI installs them)",
)
ARTIFACTS = Path(os.environ.get("FOCUSMON_TEST_ARTIFACTS")
                 or Path(__file__).resolve().parents[2] / "test-artifacts")  # fmt: skip


@pytest.fixture
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1000,800",
    ):
        options.add_argument(flag)  # fmt: skip
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def card_state(driver) -> dict:
    return driver.execute_script("""
        const card = document.querySelector('section.card');
        if (!card) return null;
        const img = card.querySelector('img.frame');
        return {stream: card.dataset.stream,
                state: card.querySelector('.state').dataset.state || null,
                figure: card.querySelector('.figure').textContent,
                loaded: img.complete && img.naturalWidth > 0,
                width: img.naturalWidth, tiles: card.querySelectorAll('.tiles div').length};
    """)


@needs_browser
@pytest.mark.network
@pytest.mark.timeout(150)
def test_the_page_shows_the_demo_camera_and_its_lens_covered(browser, tmp_path):
    # (partial_s 3: the tiles learn their baselines in 6 s, so the map shows before the hand)
    config = parse({"metrics": False, "defaults": {"alerts": {"partial_s": 3.0}},
                    "streams": [{"name": "demo cam", "source": "demo"}]})  # fmt: skip
    endpoint = MetricsEndpoint("127.0.0.1", 0)
    watcher = Watcher(config, [endpoint])
    watcher.start()
    try:
        browser.get(endpoint.url + "/")
        assert browser.title == "focusmon"
        figures, states, tiles, deadline = set(), [], 0, time.monotonic() + 90
        while time.monotonic() < deadline:
            now = card_state(browser)
            if now is not None and now["loaded"]:
                figures.add(now["figure"])
                tiles = max(tiles, now["tiles"])
                if not states or states[-1] != now["state"]:
                    states.append(now["state"])
                if now["state"] == "obstructed":
                    break
            time.sleep(0.25)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "page-obstructed.png"))
        assert now is not None and now["stream"] == "demo cam", now
        assert now["loaded"] and now["width"] == 320  # the demo's frames, kept 320 wide
        assert states[-1] == "obstructed", states  # the demo's hand over the lens
        assert "blurred" in states and states[0] == "ok", states  # its knocked lens before
        assert len({f for f in figures if f.endswith("%")}) >= 3, figures  # it moved
        assert tiles == 16  # the 4x4 map over the frame, once its tiles had baselines
        assert (ARTIFACTS / "page-obstructed.png").stat().st_size > 1000
        # One stream, full screen, by its name in the address.
        browser.get(endpoint.url + "/?stream=demo%20cam")
        time.sleep(1.0)
        single = browser.execute_script(
            "return [document.body.className, document.querySelectorAll('section.card').length]"
        )
        assert single == ["single", 1]
    finally:
        watcher.stop()
        watcher.close()
        endpoint.close()
    assert endpoint.page is not None and endpoint.page.encodings > 0
