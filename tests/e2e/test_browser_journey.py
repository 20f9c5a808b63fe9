"""The whole journey in a real browser: upload, select, preview a budget, relabel, export.

Starts ``streamlit run app/streamlit_app.py`` on a free port with a fresh
project folder and drives Debian's chromium with Playwright. Screenshots of the
four pages are written to ``test-artifacts/screenshots/``, or to ``$HOSTCP_SCREENSHOTS``
(``assets/screenshots`` refreshes the README's pictures).
"""

from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
#: Where page screenshots go: the README's folder when HOSTCP_SCREENSHOTS names it
#: (`HOSTCP_SCREENSHOTS=assets/screenshots pytest -m e2e`), else a test-artifacts folder.
SHOTS = ROOT / os.environ.get("HOSTCP_SCREENSHOTS", "test-artifacts/screenshots")
PER_CLASS = 30  # digits per class in the uploaded ZIP (300 images)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not CHROMIUM.exists(),
                       reason="Debian chromium is not installed (/usr/bin/chromium); `make test` "
                              "installs it with apt-get install chromium"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _digits_zip(path: Path) -> Path:
    """A ZIP of class folders of 8x8 digit PNGs, ``PER_CLASS`` per class."""
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    images = (d.images / 16.0 * 255).round().astype(np.uint8)
    with zipfile.ZipFile(path, "w") as zf:
        for c in range(10):
            for j, i in enumerate(np.flatnonzero(d.target == c)[:PER_CLASS]):
                buf = io.BytesIO()
                Image.fromarray(images[i]).save(buf, format="PNG")
                zf.writestr(f"digits/{c}/{j:03d}.png", buf.getvalue())
    return path


@pytest.fixture()
def app_url(tmp_path):
    """A running app on a fresh project; yields its URL and the project folder."""
    home = tmp_path / "home"
    port = _free_port()
    env = {**os.environ, "HOSTCP_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    log = open(tmp_path / "streamlit.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app/streamlit_app.py", "--server.address",
         "127.0.0.1", "--server.port", str(port), "--server.headless", "true",
         "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("streamlit did not start:\n" + (tmp_path / "streamlit.log").read_text())
            time.sleep(0.5)
        yield url, home
    finally:
        proc.terminate()  # SIGTERM, as a service manager stops it
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # it used to, with forked pool workers left behind
            proc.kill()
            proc.wait()
            raise AssertionError("the app did not stop within 30 s of SIGTERM") from None
        finally:
            log.close()


def _metric(page, label: str) -> str:
    """The displayed value of the ``st.metric`` with this label."""
    box = page.locator('[data-testid="stMetric"]').filter(has_text=label).first
    return box.locator('[data-testid="stMetricValue"]').inner_text().strip()


def _wait_idle(page, timeout: float = 30_000) -> None:
    """Wait until the app stops running (no 'Running...' status widget) and charts are drawn."""
    page.wait_for_timeout(300)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=timeout)
    page.wait_for_function(
        "() => Array.from(document.querySelectorAll('[data-testid=\"stPlotlyChart\"]'))"
        ".every(c => c.querySelector('.main-svg'))", timeout=timeout)
    page.wait_for_timeout(500)


def _shot(page, name: str) -> None:
    """Screenshot of the page (mouse parked so no tooltip shows) for the README."""
    page.mouse.move(5, 995)
    page.wait_for_timeout(300)
    page.screenshot(path=str(SHOTS / f"{name}.png"))


def _upload(page, path: Path) -> None:
    """Choose a file in the uploader, wait until it is uploaded, then press Import."""
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(path))
    page.locator('[data-testid="stFileUploader"]').get_by_text(path.name, exact=True).wait_for()
    _wait_idle(page)
    page.get_by_role("button", name="Import file").click()


def _open(page, name: str) -> None:
    page.locator('[data-testid="stSidebarNav"]').get_by_text(name, exact=True).click()
    page.get_by_role("heading", name=name, exact=True).wait_for(timeout=30_000)
    _wait_idle(page)


def test_browser_journey(app_url, tmp_path):
    from playwright.sync_api import sync_playwright

    url, home = app_url
    archive = _digits_zip(tmp_path / "digits.zip")
    bad = tmp_path / "broken.zip"
    bad.write_bytes(b"this is not a zip file")
    SHOTS.mkdir(parents=True, exist_ok=True)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1400, "height": 1500}, accept_downloads=True)
        page.set_default_timeout(30_000)
        try:
            _journey(page, url, home, tmp_path, archive, bad)
        except Exception:
            page.screenshot(path=str(tmp_path / "failure.png"))
            print("failure screenshot:", tmp_path / "failure.png")
            raise
        finally:
            browser.close()


def _journey(page, url, home, tmp_path, archive, bad) -> None:
    """The steps; ``test_browser_journey`` wraps them with a screenshot on failure."""
    from core.store import Store

    page.goto(url)
    page.get_by_role("heading", name="Data", exact=True).wait_for(timeout=60_000)
    _wait_idle(page)

    # ---- Data: a broken file shows the loader's message, not a traceback
    _upload(page, bad)
    alert = page.locator('[data-testid="stAlert"]').filter(has_text="broken.zip")
    alert.wait_for()
    assert "Traceback" not in page.content()
    assert not page.locator('[data-testid="stException"]').count()

    # ---- Data: upload the digits ZIP
    _upload(page, archive)
    page.get_by_text("Imported digits: 300 examples").wait_for()
    _wait_idle(page)
    assert _metric(page, "Examples") == "300"
    _shot(page, "data")

    # ---- Select: HOST-CP with small settings
    _open(page, "Select")
    page.get_by_text("Advanced settings").click()
    page.get_by_role("textbox", name="Method settings (JSON)").fill('{"epochs": 1}')
    page.get_by_role("textbox", name="Method settings (JSON)").press("Control+Enter")
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_text("Selection · job").wait_for()
    page.locator('[data-testid="stMetric"]').filter(has_text="Chosen").first.wait_for(timeout=240_000)
    _wait_idle(page)
    before = int(_metric(page, "Chosen").replace(",", ""))
    slider = page.get_by_role("slider")
    slider.focus()
    for _ in range(10):
        slider.press("ArrowRight")
    page.get_by_text("Preview at 20%").wait_for()
    _wait_idle(page)
    after = int(_metric(page, "Chosen").replace(",", ""))
    assert after > before, (before, after)
    # the map is laid out once by a background job
    page.locator('[data-testid="stPlotlyChart"]').first.wait_for(timeout=240_000)
    _wait_idle(page)
    page.get_by_text("Advanced settings").click()  # fold it away for the screenshot
    _wait_idle(page)
    _shot(page, "select")

    # ---- Review: relabel the first flagged example
    _open(page, "Review")
    page.get_by_role("textbox", name="Reviewer name").fill("e2e")
    page.get_by_role("textbox", name="Reviewer name").press("Enter")
    _wait_idle(page)
    progress = page.get_by_text(re.compile(r"^0 of \d+ reviewed$"))
    progress.wait_for()
    n_flagged = int(re.search(r"of (\d+)", progress.inner_text()).group(1))
    page.locator('[data-testid="stSelectbox"]').filter(has_text="Relabel as").click()
    page.get_by_role("option").nth(3).click()
    page.get_by_role("button", name=re.compile(r"^Relabel\b")).click()  # label carries its key hint
    page.get_by_text(f"1 of {n_flagged} reviewed").wait_for()
    _wait_idle(page)
    expected = [("relabel", "e2e")]
    if n_flagged > 1:  # the page moved on to the next example: keep its label from the keyboard
        page.get_by_role("heading", name="Review").click()  # focus away from any input
        page.keyboard.press("k")
        page.get_by_text(f"2 of {n_flagged} reviewed").wait_for()
        _wait_idle(page)
        expected.append(("keep", "e2e"))
    _shot(page, "review")
    store = Store(home / "hostcp.sqlite")
    did = store.list_datasets()[0].id
    decisions = store.decisions(did)
    assert [(d.action, d.reviewer) for d in decisions] == expected

    # ---- Export: the chosen subset as a ZIP of class folders
    _open(page, "Export")
    page.get_by_role("button", name="Prepare file").click()
    button = page.get_by_role("button", name=re.compile(r"^Download .*\.zip"))
    button.wait_for()
    page.locator('[data-testid="stDataFrame"]').first.wait_for()
    _wait_idle(page)
    _shot(page, "export")
    with page.expect_download() as info:
        button.click()
    out = tmp_path / "export.zip"
    info.value.save_as(out)

    run = store.latest_run(did)
    with zipfile.ZipFile(out) as zf:
        names = zf.namelist()
    assert any(n.endswith("manifest.csv") for n in names)
    assert sum(n.endswith(".png") for n in names) == int(run.selected.sum())
