"""The whole journey in a real browser: upload, select, review, reload, map, bulk accept, export.

Starts ``streamlit run app/streamlit_app.py`` on a free port with a fresh
project folder and drives Debian's chromium with Playwright. Screenshots of the
four pages are written to ``test-artifacts/screenshots/``, or to ``$HOSTCP_SCREENSHOTS``
(``assets/screenshots`` refreshes the README's pictures). The time from a decision's
keypress to the next example on screen is printed and written to
``test-artifacts/e2e-timings.json``; it is measured, never asserted (CI machines vary).
"""

from __future__ import annotations

import hashlib
import io
import json
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
from browser_steps import (
    card,
    decide_timed,
    go_to,
    lasso,
    lasso_square,
    map_points,
    metric,
    open_page,
    reviewed,
    shot,
    upload,
    wait_idle,
)

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
#: Where page screenshots go: the README's folder when HOSTCP_SCREENSHOTS names it
#: (`HOSTCP_SCREENSHOTS=assets/screenshots pytest -m e2e`), else a test-artifacts folder.
SHOTS = ROOT / os.environ.get("HOSTCP_SCREENSHOTS", "test-artifacts/screenshots")
PER_CLASS = 30  # digits per class in the uploaded ZIP (300 images)
FLIP_EVERY = 10  # every 10th digit of a class is filed under the next class: 10 % wrong labels to review
TIMINGS = ROOT / "test-artifacts" / "e2e-timings.json"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(900),  # the whole journey; the map's UMAP alone took minutes on a busy 2-core box
    pytest.mark.skipif(not CHROMIUM.exists(),
                       reason="Debian chromium is not installed (/usr/bin/chromium); `make test` "
                              "installs it with apt-get install chromium"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _digits_zip(path: Path) -> Path:
    """A ZIP of class folders of 8x8 digit PNGs, ``PER_CLASS`` per class, one in ``FLIP_EVERY`` misfiled."""
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    images = (d.images / 16.0 * 255).round().astype(np.uint8)
    with zipfile.ZipFile(path, "w") as zf:
        for c in range(10):
            for j, i in enumerate(np.flatnonzero(d.target == c)[:PER_CLASS]):
                buf = io.BytesIO()
                Image.fromarray(images[i]).save(buf, format="PNG")
                folder = (c + 1) % 10 if j % FLIP_EVERY == 0 else c
                zf.writestr(f"digits/{folder}/{c * PER_CLASS + j:04d}.png", buf.getvalue())
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
    wait_idle(page)

    # ---- Data: a broken file shows the loader's message, not a traceback
    upload(page, bad)
    alert = page.locator('[data-testid="stAlert"]').filter(has_text="broken.zip")
    alert.wait_for()
    assert "Traceback" not in page.content()
    assert not page.locator('[data-testid="stException"]').count()

    # ---- Data: upload the digits ZIP
    upload(page, archive)
    page.get_by_text("Imported digits: 300 examples").wait_for()
    wait_idle(page)
    assert metric(page, "Examples") == "300"
    shot(page, SHOTS / "data.png")
    store = Store(home / "hostcp.sqlite")
    did = store.list_datasets()[0].id

    # ---- Select: HOST-CP with small settings
    open_page(page, "Select")
    page.get_by_text("Advanced settings").click()
    page.get_by_role("textbox", name="Method settings (JSON)").fill('{"epochs": 1}')
    page.get_by_role("textbox", name="Method settings (JSON)").press("Control+Enter")
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_text("Selection · job").wait_for()
    page.locator('[data-testid="stMetric"]').filter(has_text="Chosen").first.wait_for(timeout=240_000)
    wait_idle(page)
    before = int(metric(page, "Chosen").replace(",", ""))
    slider = page.get_by_role("slider")
    slider.focus()
    for _ in range(10):
        slider.press("ArrowRight")
    page.get_by_text("Preview at 20%").wait_for()
    wait_idle(page)
    after = int(metric(page, "Chosen").replace(",", ""))
    assert after > before, (before, after)
    page.get_by_text("Advanced settings").click()  # fold it away
    wait_idle(page)
    # the map is laid out once by a background job, left running while the review goes on

    # ---- Review: relabel the first flagged example, then keep three from the keyboard, timed
    open_page(page, "Review")
    page.get_by_role("textbox", name="Reviewer name").fill("e2e")
    page.get_by_role("textbox", name="Reviewer name").press("Enter")
    wait_idle(page)
    done, n_flagged = reviewed(page)
    assert done == 0 and n_flagged >= 8, (done, n_flagged)  # 30 labels are wrong in the ZIP
    given = metric(page, "Given label")
    page.locator('[data-testid="stSelectbox"]').filter(has_text="Relabel as").click()
    page.get_by_role("option").filter(has_not_text=re.compile(rf"^{re.escape(given)}$")).first.click()
    page.get_by_role("button", name=re.compile(r"^Relabel\b")).click()  # label carries its key hint
    page.get_by_text(f"1 of {n_flagged} reviewed", exact=True).wait_for()
    wait_idle(page)
    timings = []
    for k in range(2, 5):
        page.get_by_role("heading", name="Review").click()  # focus away from any input
        ms, was, now = decide_timed(page, "k")
        page.get_by_text(f"{k} of {n_flagged} reviewed", exact=True).wait_for()
        print(f"decision to next example: {ms:.0f} ms ({was!r} -> {now!r})")
        timings.append(ms)
        wait_idle(page)
    TIMINGS.parent.mkdir(parents=True, exist_ok=True)
    umap_running = any(j.kind == "umap" and j.status == "running" for j in store.list_jobs(did, limit=50))
    TIMINGS.write_text(json.dumps({"decision_to_next_example_ms": [round(t, 1) for t in timings],
                                   "median_ms": round(float(np.median(timings)), 1),
                                   "map_job_running_meanwhile": umap_running,
                                   # how busy the machine was (1, 5, 15 min), to read the times by
                                   "load_average": [round(x, 2) for x in os.getloadavg()],
                                   "cpus": os.cpu_count()}, indent=2) + "\n")
    shot(page, SHOTS / "review.png")
    decisions = store.decisions(did)
    assert [(d.action, d.reviewer) for d in decisions] == [("relabel", "e2e")] + [("keep", "e2e")] * 3

    # ---- Review: a reload lands on the same dataset and example (they are in the URL)
    position, _, example = card(page)
    query = page.url.split("?", 1)[1]
    assert f"dataset={did}" in query and "example=" in query, page.url
    page.reload()
    page.get_by_role("heading", name="Review", exact=True).wait_for(timeout=60_000)
    wait_idle(page)
    assert card(page) == (position, n_flagged, example)
    images_after_reload = _images_load(page)  # asserted at the end, so the rest of the journey still runs
    sidebar = page.locator('[data-testid="stSidebar"]').inner_text()  # the dataset box and its caption
    assert f"#{did} digits" in sidebar, sidebar
    assert reviewed(page) == (4, n_flagged)
    box = page.get_by_role("textbox", name="Reviewer name")
    print("reviewer name after reload:", repr(box.input_value()))
    if box.input_value() != "e2e":  # the name lives in the session only, see the report on issue 12
        box.fill("e2e")
        box.press("Enter")
        wait_idle(page)

    # ---- Review: accept every confident suggestion in one step, then undo that one step
    active = len(store.active_decisions(did))
    bulk = page.get_by_role("button", name=re.compile(r"^Accept \d+ suggestions"))
    n_bulk = int(re.search(r"\d+", bulk.inner_text()).group())
    threshold = page.locator('[data-testid="stSlider"]').filter(
        has_text="Accept every suggestion").get_by_role("slider")
    for _ in range(9):  # too few suggestions that confident: lower the bar by 0.1 at a time
        if n_bulk >= 2:
            break
        for _ in range(10):
            threshold.press("ArrowLeft")
        wait_idle(page)
        n_bulk = int(re.search(r"\d+", bulk.inner_text()).group())
    assert n_bulk >= 2, n_bulk
    bulk.click()
    page.get_by_text(f"{4 + n_bulk} of {n_flagged} reviewed", exact=True).wait_for()
    wait_idle(page)
    now_active = store.active_decisions(did)
    assert len(now_active) == active + n_bulk
    assert [d.action for d in store.decisions(did)[-n_bulk:]] == ["accept"] * n_bulk
    page.get_by_role("button", name=re.compile(r"^Undo last")).click()
    page.get_by_text(f"4 of {n_flagged} reviewed", exact=True).wait_for()
    wait_idle(page)
    assert len(store.active_decisions(did)) == active

    # ---- Select: a lasso on the map opens exactly those examples in the review
    open_page(page, "Select")
    page.get_by_text("Select points with the box or lasso tool").wait_for(timeout=480_000)
    wait_idle(page)
    shot(page, SHOTS / "select.png")
    chart = page.locator('[data-testid="stPlotlyChart"]').filter(has=page.locator("canvas")).first
    chart.scroll_into_view_if_needed()
    chart.hover()
    chart.locator('.modebar-btn[data-title="Lasso Select"]').click()
    points, area = map_points(chart)
    cx, cy, picked = lasso_square(points, area, half=28)
    lasso(page, cx, cy, 28)
    open_them = page.get_by_role("button", name=re.compile(r"^Review these \d+ examples"))
    open_them.wait_for()
    assert open_them.inner_text().strip() == f"Review these {len(picked)} examples", sorted(picked)
    shot(page, TIMINGS.parent / "map-lasso.png")  # not a README picture: the lasso is drawn on it
    open_them.click()
    page.get_by_role("heading", name="Review", exact=True).wait_for()
    page.get_by_text(f"Reviewing the {len(picked)} examples selected on the map").wait_for()
    wait_idle(page)
    position, n_scope, first = card(page)
    assert n_scope == len(picked), (n_scope, picked)
    seen = {first}
    for p in range(position - 1, 0, -1):
        seen.add(go_to(page, "Previous", p))
    for p in range(2, n_scope + 1):
        seen.add(go_to(page, "^Next", p))
    assert seen == picked

    # ---- Export: the chosen subset as a ZIP of class folders, with a run manifest naming the run
    run = store.latest_run(did)
    open_page(page, "Export")
    page.get_by_text(f"Exporting from run #{run.id}").wait_for()
    page.get_by_role("button", name="Prepare file").click()
    button = page.get_by_role("button", name=re.compile(r"^Download .*\.zip"))
    button.wait_for()
    page.locator('[data-testid="stDataFrame"]').last.wait_for()  # the per-row one (the run's is folded)
    wait_idle(page)
    shot(page, SHOTS / "export.png")
    with page.expect_download() as info:
        button.click()
    out = tmp_path / info.value.suggested_filename
    info.value.save_as(out)
    with page.expect_download() as info:
        page.get_by_role("button", name="Download the run manifest (JSON)").click()
    assert info.value.suggested_filename == out.name + ".run.json"
    manifest = json.loads(Path(info.value.path()).read_text(encoding="utf-8"))

    with zipfile.ZipFile(out) as zf:
        names = zf.namelist()
    assert any(n.endswith("manifest.csv") for n in names)
    assert sum(n.endswith(".png") for n in names) == int(run.selected.sum())
    named = manifest["run"]["id"], manifest["run"]["method"], manifest["dataset"]["id"]
    assert named == (run.id, "hostcp", did), named
    assert manifest["export"]["file"] == out.name
    assert manifest["source"]["file"] == archive.name
    assert manifest["source"]["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert manifest["review"]["decisions_in_force"] == len(store.active_decisions(did)) == 4
    assert images_after_reload, "the review card's images did not load after the reload"


def _images_load(page, timeout: float = 15_000) -> bool:
    """Whether every image on the page loads (none stays broken) within ``timeout`` ms."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function("() => document.images.length > 0 && Array.from(document.images)"
                               ".every(i => i.complete && i.naturalWidth > 0)", timeout=timeout)
    except PlaywrightTimeout:
        broken = page.evaluate("() => Array.from(document.images).filter(i => !i.naturalWidth)"
                               ".map(i => i.src)")
        print("images still broken after the reload:", broken)
        return False
    return True
