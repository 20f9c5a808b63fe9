"""Helpers of the page tests: the app, metrics, jobs, unexpected errors and Markdown attacks.

Also: the check that a page showed no unexpected error (run after every ``AppTest``
run by ``conftest``), hostile dataset strings, and the check that no Markdown text
or chart of a page renders them as markup.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from google.protobuf.message import Message
from streamlit.testing.v1 import AppTest

from core.store import Store

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app" / "streamlit_app.py")
BUDGET = 0.1  # budget of the pre-filled run


def store_of(home: Path) -> Store:
    return Store(home / "hostcp.sqlite")


def wait_for_jobs(store: Store, timeout: float = 60.0) -> None:
    """Block until every job in the store has finished."""
    deadline = time.monotonic() + timeout
    while any(not j.finished for j in store.list_jobs()):
        if time.monotonic() > deadline:
            raise TimeoutError([(j.kind, j.status, j.stage) for j in store.list_jobs()])
        time.sleep(0.2)


def open_page(page: str) -> AppTest:
    """The app run once, then switched to ``app_pages/<page>.py``, with no exception."""
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, at.exception
    return at


def metric(at: AppTest, label: str) -> str:
    """The value of the metric with this label."""
    for m in at.metric:
        if m.label == label:
            return m.value
    raise KeyError(f"no metric {label!r}; have {[m.label for m in at.metric]}")


# ------------------------------------------------------------ unexpected errors
def unexpected_errors(at: AppTest) -> list[str]:
    """The ``st.error`` texts that report a bug (see ``services.engine_errors``), not bad input."""
    from app.services import UNEXPECTED_ERROR

    return [e.value for e in at.error if UNEXPECTED_ERROR.lower() in e.value.lower()]


def assert_no_unexpected_error(at: AppTest) -> None:
    """Fail when the page showed an unexpected error; its traceback is in the captured log."""
    shown = unexpected_errors(at)
    assert not shown, f"the page hit a bug (traceback in the captured log): {shown}"


# ------------------------------------------------------------ hostile strings
#: Attacks on Streamlit's Markdown: a breakout from a code span into an image and a link,
#: raw HTML, Streamlit's directives, an emoji shortcode, emphasis and LaTeX.
HOSTILE = (
    "` ![p](https://attacker.example/t.png) [click here](https://attacker.example/login) `",
    "<img src=x onerror=alert(1)>",
    ":red[alarm] :material/warning: :smile: **bold** $x^2$",
)
#: A dataset name as an upload can make it (a file stem: no '/').
HOSTILE_NAME = "ds` ![p](https:attacker.example) <img src=x onerror=alert(1)> :red[boom]"
#: Text that is markup when it is not escaped (or inside a code span) in a Markdown source.
MARKUP = ("](", "![", "<img", ":red[", ":material/", ":smile:", "**bold", "$x")


def hostile_id(i: int) -> str:
    """A unique example id that carries one of the :data:`HOSTILE` attacks."""
    return f"ex{i}{HOSTILE[i % len(HOSTILE)]}"


def hostile_class(k: int) -> str:
    """A unique class name that carries one of the :data:`HOSTILE` attacks."""
    return f"c{k} {HOSTILE[k % len(HOSTILE)]}"


def active_markup(source: str) -> str:
    """``source`` with the text that Markdown shows literally (escapes, code spans) blanked out.

    A backslash before ASCII punctuation and a whole code span (CommonMark: a run of
    backticks up to the next run of the same length) become ``"\\0"``; what is left is
    the characters the Markdown parser may act on.
    """
    out: list[str] = []
    i = 0
    while i < len(source):
        c = source[i]
        if c == "\\" and i + 1 < len(source) and _is_punctuation(source[i + 1]):
            out.append("\0")
            i += 2
        elif c == "`":
            j = i
            while j < len(source) and source[j] == "`":
                j += 1
            closing = re.compile(rf"(?<!`){source[i:j]}(?!`)").search(source, j)
            out.append("\0" if closing else source[i:j])
            i = closing.end() if closing else j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _is_punctuation(c: str) -> bool:
    return c.isascii() and not c.isalnum() and c.isprintable() and c != " "


def live_markup(source: str) -> list[str]:
    """The pieces of :data:`MARKUP` that ``source`` would render as markup."""
    active = active_markup(source)
    return [m for m in MARKUP if m in active]


# Proto fields that Streamlit shows as plain text, or that are not text at all: ids, options
# of a selectbox, typed values, chart specs (see plotly_strings), urls, formats.
_NOT_MARKDOWN = {
    "id", "form_id", "type", "shortcut", "columns", "url", "icon", "page", "page_script_hash",
    "config", "spec", "theme", "format", "tag", "default", "placeholder", "raw_value", "value",
}
_PLAIN_OPTIONS = {"selectbox", "multiselect"}


def _strings(message: Message, path: str = "") -> Iterator[tuple[str, str]]:
    for field, value in message.ListFields():
        items = value if isinstance(value, Sequence) and not isinstance(value, str) else [value]
        for item in items:
            if isinstance(item, Message):
                yield from _strings(item, f"{path}.{field.name}")
            elif isinstance(item, str):
                yield f"{path}.{field.name}", item


def markdown_sources(at: AppTest) -> list[tuple[str, str]]:
    """``(where, source)`` of every text of the last run that Streamlit renders as Markdown.

    That is every string field of every element (bodies, labels, captions, help, metric
    values, radio options, progress texts, toasts, tab labels...) except those in
    ``_NOT_MARKDOWN`` and the options of a selectbox or multiselect, which are plain text.
    """
    found = []
    for node in at._tree:
        proto = getattr(node, "proto", None)
        if not isinstance(proto, Message):
            continue
        for path, text in _strings(proto):
            name = path.rsplit(".", 1)[-1]
            if name in _NOT_MARKDOWN or (name == "options" and node.type in _PLAIN_OPTIONS):
                continue
            found.append((f"{node.type}{path}", text))
    return found


def plotly_strings(at: AppTest) -> list[str]:
    """Every string in the specs of the page's Plotly charts (titles, tick and hover labels...)."""
    out: list[str] = []

    def walk(value: object) -> None:
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    for chart in at.get("plotly_chart"):
        walk(json.loads(chart.proto.spec))
    return out


def assert_inert(at: AppTest) -> list[str]:
    """Fail if a Markdown text or a chart of the last run would render an attack as markup.

    Returns:
        The Markdown sources, to check that the hostile strings were shown at all.
    """
    sources = markdown_sources(at)
    live = [(where, text, found) for where, text in sources if (found := live_markup(text))]
    assert not live, live
    tags = [s for s in plotly_strings(at) if re.search(r"<(img|a)\b", s, re.IGNORECASE)]
    assert not tags, tags
    return [text for _, text in sources]
