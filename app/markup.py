"""Dataset strings made inert wherever Streamlit renders Markdown (ids, class, file and dataset names).

Streamlit renders GitHub-flavoured Markdown, plus its own directives (``:red[...]``,
``:material/icon:``, ``:small[...]``), emoji shortcodes and LaTeX (``$...$``), in nearly
every text it shows: ``st.markdown``, captions, alerts, toasts, headings, metric labels
and values, widget labels, radio options, image captions, spinner and progress texts.
A dataset string put there as it is can become a link, an image fetched from another
host, a coloured badge or a formula. Selectbox and multiselect options, text inputs and
dataframe cells are plain text: they get the raw string (escaping would show the
backslashes).

Plotly charts are another language: their texts (tick labels, hover labels) accept a
few HTML tags, among them ``<a href>``, so dataset strings there go through
:func:`chart_text`.
"""

from __future__ import annotations

import html
import re

__all__ = ["chart_text", "code", "md"]

# Every ASCII punctuation character: CommonMark lets a backslash escape each one, and
# the backslash then makes it literal text. That covers the Markdown specials
# (` * _ [ ] ( ) ! # < > | ~), HTML (<, &), LaTeX ($) and Streamlit's directives and
# shortcodes, which all start with ':' (the escaped '\:' never opens ':red[' and a
# shortcode ':x:' no longer matches the emoji plugin's test, which reads the source).
_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")
# A line break could end a paragraph or start a heading, a list or a table row: one
# dataset string is one line of text.
_LINE_BREAKS = re.compile(r"[\r\n\v\f\x1c-\x1e\x85\u2028\u2029]+")
_BACKTICKS = re.compile(r"`+")


def md(value: object) -> str:
    """``value`` as text that Streamlit's Markdown shows exactly as written (line breaks as spaces).

    Args:
        value: Any value; it is shown as ``str(value)``.

    Returns:
        The text with every ASCII punctuation character backslash-escaped, which renders
        as the original characters: ``md("a_b [x](y)")`` shows ``a_b [x](y)``, not a link.
    """
    return _PUNCTUATION.sub(r"\\\1", _LINE_BREAKS.sub(" ", str(value)))


def code(value: object) -> str:
    """``value`` as an inline code span that no backtick in it can close early.

    Inside a code span backslashes are literal, so :func:`md` cannot be used there;
    instead the fence is one backtick longer than the longest run of backticks in the
    text, padded with a space where the text starts or ends with a backtick or a space
    (CommonMark strips exactly one such space on each side).

    Args:
        value: Any value; it is shown as ``str(value)`` with line breaks as spaces.

    Returns:
        A Markdown code span, or ``""`` for empty text.
    """
    text = _LINE_BREAKS.sub(" ", str(value))
    if not text:
        return ""
    fence = "`" * (max((len(run) for run in _BACKTICKS.findall(text)), default=0) + 1)
    pad = " " if text[0] in "` " or text[-1] in "` " else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def chart_text(value: object) -> str:
    """``value`` as a Plotly text (tick or hover label) that shows its ``<``, ``>`` and ``&`` literally.

    Plotly turns ``<a href=...>``, ``<b>`` and a few other tags into markup and
    decodes HTML entities, so escaping those three characters as entities shows them as
    written.
    """
    return html.escape(str(value), quote=False)
