"""Playwright steps shared by the browser journey: waiting, reading widgets, timing, drawing a lasso.

Kept apart from ``test_browser_journey.py`` so the journey reads as the user's steps.
Everything here drives or reads the page as a user's browser shows it (the DOM, Plotly's
own figure state); nothing reaches into the app's session.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["card", "decide_timed", "go_to", "lasso", "lasso_square", "map_points", "metric", "open_page",
           "reviewed", "shot", "upload", "wait_idle"]

#: The review card's first line: "Example 3 of 31 · `digits/0/000.png`" (see app/components/review_card.py).
_CARD = re.compile(r"^Example (\d+) of (\d+) · (\S+)")
_CARD_JS = r"""() => {
  const e = [...document.querySelectorAll('[data-testid="stMarkdownContainer"]')]
    .find(e => /^Example \d+ of \d+/.test(e.innerText.trim()));
  return e ? e.innerText.trim() : null;
}"""


def metric(page, label: str) -> str:
    """The displayed value of the ``st.metric`` with this label."""
    box = page.locator('[data-testid="stMetric"]').filter(has_text=label).first
    return box.locator('[data-testid="stMetricValue"]').inner_text().strip()


def wait_idle(page, timeout: float = 30_000) -> None:
    """Wait until the app stops running (no 'Running...' status widget) and charts are drawn."""
    page.wait_for_timeout(300)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=timeout)
    page.wait_for_function(
        "() => Array.from(document.querySelectorAll('[data-testid=\"stPlotlyChart\"]'))"
        ".every(c => c.querySelector('.main-svg'))", timeout=timeout)
    page.wait_for_timeout(500)


def shot(page, path: Path) -> None:
    """Screenshot of the page (mouse parked so no tooltip shows) for the README."""
    page.mouse.move(5, 995)
    page.wait_for_timeout(300)
    page.screenshot(path=str(path))


def upload(page, path: Path) -> None:
    """Choose a file in the dataset uploader, wait until it is uploaded, then press Import."""
    uploader = page.get_by_role("region", name="Dataset file")  # not the validation set's
    uploader.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(path))
    page.locator('[data-testid="stFileUploader"]').get_by_text(path.name, exact=True).wait_for()
    wait_idle(page)
    page.get_by_role("button", name="Import file").click()


def open_page(page, name: str) -> None:
    """Go to a page of the sidebar's navigation and wait until it is drawn."""
    page.locator('[data-testid="stSidebarNav"]').get_by_text(name, exact=True).click()
    page.get_by_role("heading", name=name, exact=True).wait_for(timeout=30_000)
    wait_idle(page)


def card(page) -> tuple[int, int, str]:
    """The review card on screen: ``(position, queue length, example id)``."""
    page.wait_for_function(f"() => ({_CARD_JS})() !== null")
    text = page.evaluate(_CARD_JS)
    m = _CARD.match(text)
    assert m, text
    return int(m.group(1)), int(m.group(2)), m.group(3)


def reviewed(page) -> tuple[int, int]:
    """The review progress on screen: ``(reviewed, flagged)``."""
    text = page.get_by_text(re.compile(r"^\d+ of \d+ reviewed$")).inner_text()
    done, total = re.match(r"(\d+) of (\d+)", text).groups()
    return int(done), int(total)


def go_to(page, button: str, position: int) -> str:
    """Press the card's Previous or Next button; wait until the card shows ``position``; its example id."""
    page.get_by_role("button", name=re.compile(button)).click()
    page.wait_for_function(f"() => (({_CARD_JS})() || '').startsWith('Example {position} of ')")
    return card(page)[2]


def decide_timed(page, key: str) -> tuple[float, str, str]:
    """Press a decision's hotkey; ms from the keydown to the frame that shows the next example.

    A listener (capture phase, so before Streamlit's own) stamps the keydown; a
    MutationObserver waits for the card's first line to name another example and
    stamps the next animation frame, i.e. when the new card is painted. Both stamps
    are the browser's ``performance.now()``, so Playwright's round trips are not counted.

    Returns:
        ``(ms, card line before, card line after)``.
    """
    page.evaluate("""(cardText) => {
      const head = eval(cardText);
      const before = head();
      const m = window.__decision = {t0: null, t1: null, before, after: null};
      document.addEventListener('keydown', () => { if (m.t0 === null) m.t0 = performance.now(); },
                                {capture: true, once: true});
      const obs = new MutationObserver(() => {
        const now = head();
        if (m.t0 !== null && now && now !== before) {
          obs.disconnect();
          m.after = now;
          requestAnimationFrame(() => { m.t1 = performance.now(); });
        }
      });
      obs.observe(document.body, {subtree: true, childList: true, characterData: true});
    }""", _CARD_JS)
    page.keyboard.press(key)
    page.wait_for_function("() => window.__decision.t1 !== null", timeout=30_000)
    d = page.evaluate("() => window.__decision")
    return d["t1"] - d["t0"], d["before"], d["after"]


_POINTS_JS = """(gd) => {
  const r = gd.getBoundingClientRect(), xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
  const pts = [];
  for (const t of gd._fullData) {
    const xs = Array.from(t.x || []), ys = Array.from(t.y || []);
    xs.forEach((x, j) => pts.push({id: String(t.customdata[j][0]), x: r.left + xa._offset + xa.c2p(x),
                                   y: r.top + ya._offset + ya.c2p(ys[j])}));
  }
  return {pts, area: [r.left + xa._offset, r.top + ya._offset, xa._length, ya._length]};
}"""


def map_points(chart) -> tuple[dict[str, tuple[float, float]], tuple[float, ...]]:
    """Every point of the Plotly map in ``chart`` (a locator): id -> viewport (x, y), and the plot area.

    Read from the figure Plotly drew (its axes' data-to-pixel maps); a point drawn by two
    traces (the flagged ring over its dot) has one id and one position.
    """
    got = chart.locator(".js-plotly-plot").evaluate(_POINTS_JS)
    return {p["id"]: (p["x"], p["y"]) for p in got["pts"]}, tuple(got["area"])


def lasso_square(points: dict[str, tuple[float, float]], area: tuple[float, ...], *, half: float = 28,
                 margin: float = 5, fewest: int = 3, most: int = 12) -> tuple[float, float, set[str]]:
    """A square around some point holding ``fewest``..``most`` points, none within ``margin`` px of its edge.

    Returns:
        The square's centre and the ids inside it (what a lasso along its edge selects).
    """
    left, top, width, height = area
    for cid in sorted(points):
        cx, cy = points[cid]
        # inside the plot, clear of the modebar (top right) and the legend below
        if not (left + half + 10 < cx < left + width - half - 10
                and top + half + 60 < cy < top + height - half - 10):
            continue
        dist = {i: max(abs(x - cx), abs(y - cy)) for i, (x, y) in points.items()}
        if any(half - margin <= d <= half + margin for d in dist.values()):
            continue
        inside = {i for i, d in dist.items() if d < half}
        if fewest <= len(inside) <= most:
            return cx, cy, inside
    raise AssertionError("no region of the map holds a few well-separated points")


def lasso(page, cx: float, cy: float, half: float, step: float = 4) -> None:
    """Draw a lasso along the square's edge (mouse down, many small moves, back to the start, up)."""
    corners = [(cx - half, cy - half), (cx + half, cy - half), (cx + half, cy + half), (cx - half, cy + half),
               (cx - half, cy - half)]
    page.mouse.move(*corners[0])
    page.mouse.down()
    for (x0, y0), (x1, y1) in zip(corners, corners[1:], strict=False):
        n = max(1, int(max(abs(x1 - x0), abs(y1 - y0)) / step))
        for k in range(1, n + 1):
            page.mouse.move(x0 + (x1 - x0) * k / n, y0 + (y1 - y0) * k / n)
    page.mouse.up()
