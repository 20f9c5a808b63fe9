"""A sample of the hostile-input catalogue through ``hostcp inspect`` and ``select``: exit 2, one line.

The whole catalogue, as child processes with their peak memory, is
``benchmarks/hostile_inputs.py``; this runs a cheap, varied subset in-process.
"""

from __future__ import annotations

import pytest

from core.cli import main

from .hostile import catalogue

SAMPLE = (
    "zip:5000-unreadable-pngs",
    "zip:png-header-bomb",
    "zip:decoded-pixels-over-cap",
    "zip:stack-over-cap",
    "zip:newlines-in-member-names",
    "csv:duplicate-label-column",
    "parquet:duplicate-label-column",
    "csv:10000-classes-1-row-each",
    "csv:10000-classes-2-rows-each",
    "npz:header-claims-huge-stack",
    "bad:corrupt-images",
    "bad:ragged-csv",
)
CASES = {c.name: c for c in catalogue() if c.name in SAMPLE}


def test_the_sample_is_in_the_catalogue():
    assert sorted(CASES) == sorted(SAMPLE)
    names = {c.name for c in catalogue()}
    assert len(names) >= 40 and {c.name for c in catalogue(quick=True)} <= names


@pytest.mark.parametrize("name", SAMPLE)
def test_a_hostile_input_is_refused_in_one_line(name, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOSTCP_HOME", str(tmp_path / "home"))
    case = CASES[name]
    path = str(case.build(tmp_path))
    for argv in (
        ["inspect", path, *case.args],
        ["select", path, "--method", "random", "--out", str(tmp_path / "out"), *case.args],
    ):
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 2, err
        assert len(err.splitlines()) == 1, err
        assert err.startswith(f"hostcp {argv[0]}: error: ")
    assert not (tmp_path / "out" / "hostcp.sqlite").exists()  # refused before any work


def test_an_empty_validation_split_is_refused_by_select_only(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOSTCP_HOME", str(tmp_path / "home"))
    case = next(c for c in catalogue(quick=True) if c.name == "csv:empty-validation-split")
    path = str(case.build(tmp_path))
    assert main(["inspect", path]) == 0
    assert "validation split would be empty" in capsys.readouterr().out
    assert main(["select", path, "--method", "random", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "validation split would be empty" in err
