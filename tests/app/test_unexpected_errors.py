"""A bug inside a page is logged with its traceback, shown without details, and fails the page test."""

from __future__ import annotations

import logging

import pytest
from app_helpers import APP, open_page, unexpected_errors
from streamlit.testing.v1 import AppTest

from app.services import UNEXPECTED_ERROR


def _broken(*args, **kwargs):
    raise KeyError("secret internal detail")


def test_an_unexpected_error_is_logged_and_fails_the_page_test(project, monkeypatch, caplog):
    from core import export

    monkeypatch.setattr(export, "build_manifest", _broken)
    at = AppTest.from_file(APP, default_timeout=60).run()
    with caplog.at_level(logging.ERROR, logger="app.services"):
        with pytest.raises(AssertionError, match="the page hit a bug"):  # conftest's check of every run
            at.switch_page("app_pages/export.py").run()
    assert unexpected_errors(at) == [f"Exporting: {UNEXPECTED_ERROR}"]  # no type, message or traceback
    logged = [r for r in caplog.records if r.name == "app.services" and r.levelno == logging.ERROR]
    assert len(logged) == 1 and "Exporting" in logged[0].getMessage()
    assert logged[0].exc_info is not None and logged[0].exc_info[0] is KeyError
    assert "Traceback" in caplog.text and "secret internal detail" in caplog.text


def test_an_expected_error_shows_its_message_and_logs_nothing(project, monkeypatch, caplog):
    from core import export
    from core.errors import ExportError

    def refuse(*args, **kwargs):
        raise ExportError("The manifest needs a run: run a selection first.")

    monkeypatch.setattr(export, "build_manifest", refuse)
    with caplog.at_level(logging.ERROR, logger="app.services"):
        at = open_page("export")
    assert [e.value for e in at.error] == ["Exporting: The manifest needs a run\\: run a selection first\\."]
    assert not [r for r in caplog.records if r.name == "app.services"]
