"""The escaping helpers of ``app.markup`` and the server settings in ``.streamlit/config.toml``."""

from __future__ import annotations

import re
import string
import tomllib

import pytest
from app_helpers import HOSTILE, HOSTILE_NAME, ROOT, active_markup, live_markup

from app.markup import chart_text, code, md

SAMPLES = [*HOSTILE, HOSTILE_NAME, string.punctuation, "a\\", "\\*", "plain id 42", "é ü → ✓", ""]


def _unescape(source: str) -> str:
    """What CommonMark shows for text whose only markup is backslash escapes of ASCII punctuation."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", source)


@pytest.mark.parametrize("text", SAMPLES)
def test_md_escapes_every_special_and_shows_the_text_unchanged(text):
    source = md(text)
    assert _unescape(source) == text  # readable: exactly the original once rendered
    assert set(active_markup(source)) <= set(string.ascii_letters + string.digits + " \0éü→✓")
    assert not live_markup(source)


def test_md_escapes_each_markdown_html_and_streamlit_special():
    for c in "`*_[]()!#<>|~$:&\\{}-+.=^\"'/@%;,?":
        assert md(c) == "\\" + c, c


def test_md_puts_a_string_on_one_line():
    assert md("# a\n- b\r\n\n> c\u2028d") == "\\# a \\- b \\> c d"


@pytest.mark.parametrize("text", [*SAMPLES[:-1], "`", "a ` b", "``x``", " x ", "`` ` ``"])
def test_code_cannot_be_closed_early(text):
    span = code(text)
    fence = re.match(r"`+", span).group()
    body = span[len(fence) : -len(fence)]
    assert span.endswith(fence) and fence not in re.findall(r"`+", body)  # no run of the fence's length
    if body.startswith(" ") and body.endswith(" ") and body.strip():
        body = body[1:-1]  # CommonMark strips one space on each side
    assert body == text
    assert active_markup(span) == "\0"  # the whole span is literal


def test_code_of_an_empty_or_multiline_string():
    assert code("") == ""
    assert code("a\n\nb") == "`a b`"


def test_chart_text_escapes_plotly_html():
    assert chart_text('<a href="https://attacker.example">x</a> & <b>') == (
        '&lt;a href="https://attacker.example"&gt;x&lt;/a&gt; &amp; &lt;b&gt;'
    )


def test_the_server_listens_locally_and_shows_no_error_details():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "127.0.0.1"
    assert config["client"]["showErrorDetails"] == "none"
