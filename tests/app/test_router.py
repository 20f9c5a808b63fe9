"""The router runs the app only as Streamlit's ``__main__``, never in a spawned child."""

from __future__ import annotations

import multiprocessing as mp
import os
import sys

from app_helpers import APP
from streamlit.testing.v1 import AppTest


def test_a_spawned_child_of_the_app_does_not_rerun_it(home, tmp_path, monkeypatch):
    """Streamlit installs the app script as ``__main__``; a spawn child re-imports it.

    The child used to run the whole app and import the demo into its ``HOSTCP_HOME``, which
    a test or the server had never asked for (plain ``pytest`` wrote to ``~/.hostcp``).
    """
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception, at.exception
    assert getattr(sys.modules["__main__"], "__file__", None) == APP  # as in the server
    elsewhere = tmp_path / "someone-elses-home"
    monkeypatch.setenv("HOSTCP_HOME", str(elsewhere))
    child = mp.get_context("spawn").Process(target=os.getpid)
    child.start()
    child.join(120)
    assert child.exitcode == 0
    assert not elsewhere.exists(), sorted(p.name for p in elsewhere.rglob("*"))


def test_the_suite_never_uses_the_real_home():
    """tests/conftest.py points HOSTCP_HOME at a temporary folder before anything is imported."""
    home = os.environ["HOSTCP_HOME"]
    assert os.path.basename(home).startswith("hostcp-test-home-"), home
    assert os.path.realpath(home) != os.path.realpath(os.path.expanduser("~/.hostcp"))


def test_the_sidebar_shows_the_whole_dataset_name(home):
    """The dataset box cuts a long name off; the line under it shows all of it (issue 12, item 5)."""
    from app_helpers import store_of

    from core.data import load_demo
    from core.pipeline import import_dataset

    demo = load_demo("digits-noisy")
    long_name = "clinical trial 2026 wave three, site B, relabelled by the second reviewer"
    import_dataset(store_of(home), type(demo)(**{**demo.__dict__, "name": long_name}), seed=0)
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception, at.exception
    shown = [c.value.replace("\\", "") for c in at.sidebar.caption]  # escaped as markup
    assert any(long_name in c for c in shown), shown
