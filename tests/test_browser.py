"""The Dagster UI and the HTML reports, as a person sees them, in headless Chromium.

Starts `dagster-webserver` on localhost against the instance the pipeline fixture recorded
its runs in, drives Debian's Chromium through chromedriver (Selenium) to the asset graph and to
the reports asset's page, and opens one HTML report. Screenshots go to artifacts/screenshots/
(ignored by git, kept by CI as artifacts).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from liftlab import db

from liftlab.config import REPO_ROOT

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
SHOTS = REPO_ROOT / "artifacts" / "screenshots"

pytestmark = pytest.mark.browser


def _require_browser():
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        if os.environ.get("CI"):
            pytest.fail("chromium/chromedriver missing: `make test` installs them (Debian packages chromium chromium-driver)")
        pytest.skip("chromium/chromedriver not installed")


@pytest.fixture(scope="module")
def browser():
    _require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1400,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    SHOTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def webserver(built, tmp_path_factory):
    port = _free_port()
    env = {**os.environ, "DAGSTER_HOME": str(built.home), "DATABASE_URL": built.info.url()}
    log = tmp_path_factory.mktemp("webserver") / "webserver.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("dagster-webserver")), "-w", str(REPO_ROOT / "platform" / "liftlab" / "dev_workspace.yaml"),
             "-h", "127.0.0.1", "-p", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/server_info", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            time.sleep(1)
    else:
        proc.terminate()
        pytest.fail(f"dagster-webserver did not start: {log.read_text()[-3000:]}")
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def _wait_for_text(driver, texts, timeout=90):
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(lambda d: all(t in d.find_element("tag name", "body").text for t in texts))


def test_asset_graph_shows_the_liftlab_groups(browser, webserver):
    browser.get(f"{webserver}/asset-groups")
    groups = ["ingest", "transform", "gates", "effects", "decisions", "reports"]
    try:
        _wait_for_text(browser, groups)
    finally:
        browser.save_screenshot(str(SHOTS / "asset_graph.png"))


def _dismiss_dialogs(driver):
    for button in driver.find_elements("tag name", "button"):
        try:
            if button.text.strip() in ("Skip", "Dismiss", "Close"):
                driver.execute_script("arguments[0].click()", button)
        except Exception:  # the dialog re-rendered under us; nothing to dismiss
            pass


def _open_markdown(driver, key: str) -> None:
    """Open an asset's Markdown metadata entry ``key``: long Markdown is collapsed behind a link,
    opened here as a person would."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 120).until(lambda d: key in d.page_source)
    _dismiss_dialogs(driver)
    link = WebDriverWait(driver, 30).until(lambda d: d.find_element(
        "xpath", f"//tr[.//*[normalize-space(text())='{key}']]//a[contains(., 'Show Markdown')]"))
    driver.execute_script("arguments[0].click()", link)


def test_reports_asset_page_shows_its_plots(browser, webserver):
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{webserver}/assets/reports/experiment_reports")
    try:
        _open_markdown(browser, "forest_plots")
        WebDriverWait(browser, 60).until(
            lambda d: sum(
                1
                for img in d.find_elements("tag name", "img")
                if (img.get_attribute("src") or "").startswith("data:image/png")
                and d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img) > 100
            )
            >= 3
        )
    finally:
        browser.save_screenshot(str(SHOTS / "reports_asset.png"))


def test_every_html_report_opens_with_its_plots(browser, built, tmp_path):
    """Every report of the built world, written afresh from its tables (other tests write reports
    of their own databases to the session's folder)."""
    from liftlab.reports.render import write_report
    from liftlab.specs import load_specs

    reports_dir = tmp_path
    with db.connect(built.info) as conn:
        for item in load_specs():
            write_report(conn, item.spec.id, reports_dir)
    for item in load_specs():
        report = reports_dir / f"{item.spec.id}.html"
        assert report.exists(), report
        browser.get(report.as_uri())
        images = browser.find_elements("css selector", "figure img")
        browser.save_screenshot(str(SHOTS / f"report_{item.spec.id}.png"))
        assert images, f"{report.name} has no plot"
        assert all(browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 200", img)
                   for img in images), f"a plot of {report.name} did not render"
        assert browser.find_element("css selector", ".decision").text.split()[0] in {
            "SHIP", "HOLD", "ROLLBACK", "HALTED", "KEEP"}
    # an event-stream experiment also shows its effect day by day, with the always-valid bounds
    browser.get((reports_dir / "onboarding_adaptive.html").as_uri())
    for figure in ("fig-forest", "fig-cumulative"):
        img = browser.find_element("css selector", f"#{figure} img")
        assert browser.execute_script("return arguments[0].naturalWidth > 200", img), figure


def test_decision_reasons_read_as_text_in_the_ui(browser, webserver, built):
    """The decisions asset shows every experiment's reasons as Markdown: real α and −, no JSON
    escapes (``\\u03b1``), no brackets of a JSON array."""
    from selenium.webdriver.support.ui import WebDriverWait

    with db.connect(built.info) as conn:
        reasons = conn.execute("select reasons->>0 from results.decisions where experiment_id = 'hillstrom'").fetchone()[0]
    browser.get(f"{webserver}/assets/results/decisions")
    try:
        _open_markdown(browser, "decisions")
        WebDriverWait(browser, 60).until(lambda d: "hillstrom" in d.find_element("tag name", "body").text
                                         and "α" in d.find_element("tag name", "body").text)
        text = browser.find_element("tag name", "body").text
        assert "\\u03b1" not in text and '["' not in text
        assert reasons.split(" (")[0] in text  # "Mens E-Mail improves conversion by +118.84%"
    finally:
        browser.save_screenshot(str(SHOTS / "decisions_asset.png"))


def test_the_srm_check_has_a_result_per_experiment_in_the_ui(browser, webserver):
    """gates/srm's check, Partitions tab: one row per experiment, the halted one failed."""
    from selenium.webdriver.support.ui import WebDriverWait

    from liftlab.specs import load_specs

    browser.get(f"{webserver}/assets/gates/srm?view=checks")
    try:
        WebDriverWait(browser, 120).until(lambda d: "srm_passed" in d.find_element("tag name", "body").text)
        _dismiss_dialogs(browser)
        tab = WebDriverWait(browser, 60).until(
            lambda d: d.find_elements("xpath", "//*[normalize-space(text())='Partitions']")[-1])
        browser.execute_script("arguments[0].click()", tab)
        ids = [item.spec.id for item in load_specs()]
        WebDriverWait(browser, 60).until(lambda d: "Passed (" in d.find_element("tag name", "body").text)
        text = browser.find_element("tag name", "body").text
        assert all(i in text for i in ids), text[-2000:]
        assert "Failed (1)" in text and f"Passed ({len(ids) - 1})" in text  # checkout_redesign halts
    finally:
        browser.save_screenshot(str(SHOTS / "srm_check_partitions.png"))
