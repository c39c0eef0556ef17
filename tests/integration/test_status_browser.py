"""The status page in a real browser (Debian's chromium, headless, driven by selenium through
chromium-driver) against ``devicehooks run``: log in, see the simulated devices, replay a dead letter."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis

from app.redis_server import free_port
from tests.fixtures.handlers import RECEIVED
from tests.integration.workers import ROOT
from tests.support import stop, wait_until
from workers.deadletters import DeadLetters

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
SCREENSHOTS = (
    Path(os.environ.get("DEVICEHOOKS_SCREENSHOTS", "")) if os.environ.get("DEVICEHOOKS_SCREENSHOTS") else None
)

if CHROMIUM is None or CHROMEDRIVER is None:  # tests/run installs them; a bare pytest run may lack them
    pytest.skip(
        "chromium and chromedriver are not installed (tests/run installs them)", allow_module_level=True
    )

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--window-size=1400,1000", f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def devrun(redis_url: str, redis: Redis, tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    """``devicehooks run`` on a free port, its handlers failing until ``test:broken`` is deleted."""
    redis.set("test:broken", "1")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CALLBACK_", "DM_", "MANAGEMENT_"))}
    env.update(
        PORT=str(port),
        PYTHONPATH=str(ROOT),
        REDIS_URL=redis_url,
        HANDLERS="tests.fixtures.handlers:with_failing",
    )
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        runner = subprocess.Popen(
            [sys.executable, "-m", "app", "run"], env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_until(
            lambda: "Ctrl-C stops everything" in log.read_text(), timeout=60, what="the runner to start"
        )
        match = re.search(r"made up for this run: log in with the management key (\S+)\)", log.read_text())
        assert match, log.read_text()
        yield f"http://127.0.0.1:{port}", match.group(1), log
    finally:
        stop(runner, signal.SIGINT, timeout=60)


def shot(driver: webdriver.Chrome, tmp_path: Path, name: str) -> None:
    """Keep a screenshot (under DEVICEHOOKS_SCREENSHOTS when set, to look at)."""
    driver.save_screenshot(str(tmp_path / name))
    if SCREENSHOTS is not None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(SCREENSHOTS / name))


def rows(driver: webdriver.Chrome, selector: str) -> list[str]:
    driver.get(driver.current_url.split("?")[0])
    return [
        row.get_attribute("data-ep") or row.get_attribute("data-letter") or ""
        for row in driver.find_elements(By.CSS_SELECTOR, selector)
    ]


def test_log_in_see_the_simulated_devices_and_replay_a_dead_letter(
    browser: webdriver.Chrome, devrun: tuple[str, str, Path], redis: Redis, tmp_path: Path
) -> None:
    base, key, log = devrun
    browser.get(base + "/status")
    assert browser.current_url.endswith("/status/login")
    assert key not in browser.current_url
    browser.find_element(By.ID, "key").send_keys("wrong-key-0123456789")
    browser.find_element(By.ID, "login").click()
    error = wait_until(lambda: browser.find_elements(By.ID, "login-error"), what="the login error")
    assert "not a management key" in error[0].text
    browser.find_element(By.ID, "key").send_keys(key)
    browser.find_element(By.ID, "login").click()
    wait_until(lambda: browser.current_url == base + "/status", what="the overview after the login")
    devices = wait_until(lambda: rows(browser, "tr.device"), timeout=30, what="simulated devices on the page")
    assert all(ep for ep in devices)
    dead = DeadLetters(redis)
    wait_until(lambda: dead.count() > 0, timeout=30, what="a dead letter from the failing handler")
    redis.delete("test:broken")
    letters = wait_until(
        lambda: rows(browser, "tr[data-letter]"), timeout=30, what="dead letters on the page"
    )
    shot(browser, tmp_path, "status-overview.png")
    target = letters[0]
    expected = dead.get(target)
    assert expected is not None
    browser.find_element(By.CSS_SELECTOR, f'tr[data-letter="{target}"] button.replay').click()
    message = wait_until(lambda: browser.find_elements(By.ID, "message"), what="the replay message")
    assert message[0].text == f"Replay of {target} queued."
    wait_until(lambda: dead.get(target) is None, timeout=30, what="the replayed dead letter to be gone")
    uids = [e.get("uid") for e in expected["events"]]
    received = wait_until(
        lambda: [
            r for r in redis.lrange(RECEIVED + "failing", 0, -1) if any(u and u in r.decode() for u in uids)
        ],
        timeout=30,
        what="the failing handler to get the replayed events",
    )
    assert received
    assert target not in rows(browser, "tr[data-letter]")
    browser.find_element(By.CSS_SELECTOR, f'tr.device[data-ep="{devices[0]}"] a').click()
    wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, "tr.event"), what="the device's history")
    shot(browser, tmp_path, "status-device.png")
    assert key not in log.read_text().replace(f"management key {key})", "", 1)
