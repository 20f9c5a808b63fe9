"""The `hostcp` command line end to end: file shape, columns, counts, exit codes, README examples."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.cli import SELECTION_COLUMNS, main
from core.data.dataset import make_split

ROOT = Path(__file__).resolve().parent.parent
HOSTCP = str(Path(sys.executable).with_name("hostcp"))


# a fresh HOSTCP_HOME per test (tests/conftest.py): the CLI stores its runs in the app's database there
pytestmark = pytest.mark.usefixtures("home")


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory) -> Path:
    """A 3-class tabular dataset with 8 features and string labels, 10% of labels flipped."""
    rng = np.random.default_rng(0)
    n = 240
    y = rng.integers(0, 3, n)
    centers = rng.normal(0, 3, (3, 8))
    x = centers[y] + rng.normal(0, 1, (n, 8))
    flip = rng.random(n) < 0.1
    y_noisy = np.where(flip, (y + 1) % 3, y)
    df = pd.DataFrame(x, columns=[f"f{i}" for i in range(8)])
    df["label"] = np.array(["ant", "bee", "cat"])[y_noisy]
    path = tmp_path_factory.mktemp("csv") / "small.csv"
    df.to_csv(path, index=False)
    return path


def _selection(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "selection.csv")


@pytest.mark.parametrize("method", ["hostcp", "random"])
def test_select_writes_the_contracted_file(small_csv, tmp_path, method, capsys):
    out = tmp_path / "out"
    code = main(["select", str(small_csv), "--out", str(out), "--budget", "0.1", "--method", method])
    assert code == 0, capsys.readouterr().err
    df = _selection(out)
    assert tuple(df.columns) == SELECTION_COLUMNS
    assert len(df) == 240 and df["index"].tolist() == list(range(240))
    candidates = df["value"].notna()
    labels = pd.read_csv(small_csv)["label"].astype("category").cat.codes.to_numpy()
    held_out = make_split(labels, val_fraction=0.2, test_fraction=0.0, seed=0).val
    assert candidates.sum() == 240 - len(held_out)  # 20% of each class held out for validation
    assert not candidates.iloc[held_out].any()
    assert df["selected"].sum() == round(0.1 * candidates.sum())
    assert not df.loc[~candidates, "selected"].any()  # held-out rows are never selected
    assert df["mislabel_score"].between(0, 1).all()
    assert set(df["flagged"].unique()) <= {0, 1} and df["flagged"].sum() > 0
    assert set(df["suggested_label"]) <= {"ant", "bee", "cat"}


def test_select_passes_settings_to_the_method(small_csv, tmp_path, home, capsys):
    """``learn_phi=False`` (Python's spelling) is the bool False, not the truthy text "False"."""
    from core.store import Store

    out = tmp_path / "out"
    code = main(["select", str(small_csv), "--out", str(out), "--budget", "0.1",
                 "--set", "learn_phi=False", "--set", "epochs=1", "--set", "swap_passes=0",
                 "--set", "scale.learn_sample=100"])
    assert code == 0, capsys.readouterr().err
    store = Store(home / "hostcp.sqlite")  # the app's database: the run shows up in the app
    project = json.loads((out / "project.json").read_text())
    assert Path(project["store"]) == store.path.resolve()
    run = store.get_run(project["run_id"])
    assert run.dataset_id == project["dataset_id"] and run.method == "hostcp"
    cfg = run.info["config"]
    assert (cfg["learn_phi"], cfg["epochs"], cfg["swap_passes"]) == (False, 1, 0)
    assert cfg["scale"]["learn_sample"] == 100 and run.info["learn_points"] == 100
    df = _selection(out)
    assert df["selected"].sum() == round(0.1 * df["value"].notna().sum())


def test_select_with_a_validation_file_makes_every_row_a_candidate(small_csv, tmp_path):
    df = pd.read_csv(small_csv)
    data, val = tmp_path / "data.csv", tmp_path / "val.csv"
    df.iloc[:180].to_csv(data, index=False)
    df.iloc[180:].to_csv(val, index=False)
    out = tmp_path / "out"
    assert main(["select", str(data), "--val", str(val), "--out", str(out), "--budget", "0.2",
                 "--method", "random"]) == 0
    sel = _selection(out)
    assert len(sel) == 180 and sel["value"].notna().all() and sel["selected"].sum() == 36


def test_select_says_which_read_out_the_validation_set_kept(small_csv, tmp_path, capsys):
    df = pd.read_csv(small_csv)
    data, val = tmp_path / "data.csv", tmp_path / "val.csv"
    df.iloc[:180].to_csv(data, index=False)
    df.iloc[180:].to_csv(val, index=False)  # 60 rows: enough for a choice (CHOICE_MIN_VAL)
    assert main(["select", str(data), "--val", str(val), "--out", str(tmp_path / "out"), "--budget", "0.2",
                 "--method", "hostcp"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("read-out: "))
    assert "swap passes" in line and "k-center" in line and "%" in line


def test_select_represents_a_validation_file_whose_classes_differ_from_the_pool(small_csv, tmp_path, capsys):
    df = pd.read_csv(small_csv)
    rows = {c: np.flatnonzero(df["label"] == c) for c in ("ant", "bee", "cat")}
    pool = np.r_[rows["ant"][:60], rows["bee"][:15], rows["cat"][:15]]  # two thirds ants
    val = np.r_[rows["ant"][60:], rows["bee"][15:], rows["cat"][15:]]  # mostly bees and cats
    data, val_path, out = tmp_path / "data.csv", tmp_path / "val.csv", tmp_path / "out"
    df.iloc[pool].to_csv(data, index=False)
    df.iloc[val].to_csv(val_path, index=False)
    assert main(["select", str(data), "--val", str(val_path), "--out", str(out), "--budget", "0.2",
                 "--set", "epochs=1"]) == 0
    assert "target: shift detected between pool and validation set" in capsys.readouterr().out
    sel = _selection(out)
    chosen = pd.read_csv(data)["label"][sel["selected"] == 1]
    assert len(chosen) == 18 and (chosen == "ant").sum() <= 6  # by the pool's shares it would be 12


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["select", "missing.csv", "--out", "o"], "no such file"),
        (["select", "{csv}", "--out", "o", "--label-column", "target"],
         "Give it with --label-column 'label'"),
        (["select", "{csv}", "--out", "o", "--budget", "1.5"], "budget"),
        (["select", "{csv}", "--out", "o", "--method", "magic"], "Unknown method"),
        (["select", "{csv}", "--out", "o", "--set", "learn_phi"], "KEY=VALUE"),
        (["select", "{csv}", "--out", "o", "--set", "not_a_setting=1"],
         "--set not_a_setting: no such setting. Valid settings: batch_size, class_quotas"),
        (["select", "{csv}", "--out", "o", "--set", "start=online"],  # a knob that lost on the tuning folds
         "--set start: no such setting. Valid settings: batch_size, class_quotas"),
        (["select", "{csv}", "--out", "o", "--set", "learn_sample=5"],  # it is scale.learn_sample now
         "--set learn_sample: no such setting."),
        (["select", "{csv}", "--out", "o", "--set", "scale.learn_sample=few"],
         "--set scale.learn_sample takes an integer"),
        (["select", "{csv}", "--out", "o", "--method", "knn_shapley", "--set", "k=3"],
         "Valid settings: n_neighbors."),
        (["select", "{csv}", "--out", "o", "--set", "learn_phi=maybe"],
         "--set learn_phi takes true or false"),
        (["select", "{csv}", "--out", "o", "--set", "epochs=two"], "--set epochs takes an integer"),
        (["select", "{csv}", "--out", "o", "--set", "batch_size=2"], "--set: HostCPConfig.batch_size"),
        (["select", "{csv}", "--out", "o", "--set", "scale.swap_batches=0"],
         "--set: ScaleConfig.swap_batches must be positive"),
        (["export", "{empty}", "--out", "x.txt"], "no project database"),
        (["inspect", "{bad}"], ""),
        (["curve", "{csv}", "--out", "o", "--budgets", "0.1,7"], "Budgets are fractions"),
        (["curve", "{csv}", "--out", "o", "--budgets", "ten,20"], "Budgets are fractions"),
        (["export", "{empty}", "--out", "x.csv"], "no project database"),
    ],
)
def test_bad_input_gives_one_line_and_exit_2(small_csv, tmp_path, capsys, args, message):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    (tmp_path / "empty").mkdir()
    argv = [a.format(csv=small_csv, bad=bad, empty=tmp_path / "empty") for a in args]
    argv = [str(tmp_path / a) if a in ("o", "x.csv", "x.txt") else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("hostcp ")
    assert message in err
    assert "Traceback" not in err


def test_inspect_prints_a_summary(small_csv, capsys):
    assert main(["inspect", str(small_csv)]) == 0
    out = capsys.readouterr().out
    assert "240" in out and "ant" in out and "bee" in out


def _readme_cli_examples() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = text.split("## The command line", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    return [line.strip() for line in block.strip().splitlines() if line.strip()]


@pytest.mark.slow
def test_readme_cli_examples_run_as_written(tmp_path):
    examples = _readme_cli_examples()
    assert len(examples) >= 4 and all(e.startswith("hostcp ") for e in examples)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for line in examples:
        argv = shlex.split(line)
        proc = subprocess.run([HOSTCP, *argv[1:]], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == 0, f"{line}\n{proc.stderr[-2000:]}"
    sel = pd.read_csv(tmp_path / "out/digits/selection.csv")
    assert tuple(sel.columns) == SELECTION_COLUMNS and len(sel) == 1797
    assert (tmp_path / "out/digits/subset.zip").stat().st_size > 0
    curve = pd.read_csv(tmp_path / "out/curve/curve.csv")
    assert set(curve["method"]) >= {"random", "hostcp", "full"}
    assert re.search("plotly", (tmp_path / "out/curve/curve.html").read_text()[:5000], re.I)


def test_an_unwritable_output_folder_is_one_line_not_a_traceback(small_csv, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["select", str(small_csv), "--out", str(blocker / "out"), "--method", "random"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("hostcp select: error:") and "Traceback" not in err


def test_a_long_multi_line_error_is_still_one_bounded_line(monkeypatch, capsys):
    """Whatever an engine message holds, a script reading stderr gets one line of bounded length."""
    from core import cli
    from core.errors import DataError

    def fail(*_args, **_kw):
        lines = "5000 images could not be read:\n  a.png: bad\n  b.png: bad\n"
        raise DataError(lines + "c.png: bad; " * 5000)

    monkeypatch.setattr(cli, "load_input", fail)
    assert cli.main(["inspect", "x.zip"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and len(err) < 2100
    assert err.startswith("hostcp inspect: error: 5000 images could not be read: a.png: bad b.png")


def test_select_reads_embeds_and_detects_once(small_csv, tmp_path, monkeypatch, capsys):
    """Nothing in the select path is done twice: one read of the stored data, one embedding,
    one detector run (HOST-CP takes the job's flags instead of detecting again)."""
    import core.embeddings
    import core.mislabel
    from core.store import Store

    calls: dict[str, int] = {}

    def counted(owner, name):
        fn = getattr(owner, name)

        def wrapper(*args, **kwargs):
            calls[name] = calls.get(name, 0) + 1
            return fn(*args, **kwargs)

        monkeypatch.setattr(owner, name, wrapper)

    counted(Store, "get_dataset")
    counted(core.embeddings, "embed")
    counted(core.mislabel, "detect_mislabels")
    code = main(["select", str(small_csv), "--out", str(tmp_path / "out"), "--budget", "0.1",
                 "--set", "epochs=1", "--set", "swap_passes=0"])
    assert code == 0, capsys.readouterr().err
    assert calls == {"get_dataset": 1, "embed": 1, "detect_mislabels": 1}


def test_the_console_script_exits_fast_with_its_output_and_status(small_csv, tmp_path):
    """`hostcp` ends with os._exit (no interpreter teardown): output must still be flushed, codes kept."""
    out = tmp_path / "out"
    proc = subprocess.run([HOSTCP, "select", str(small_csv), "--out", str(out), "--method", "random"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    said = re.match(r"selected (\d+) of (\d+) candidates with random; ", proc.stdout)  # flushed first
    assert said, proc.stdout
    sel = _selection(out)
    assert (int(said[1]), int(said[2])) == (sel["selected"].sum(), sel["value"].notna().sum())
    bad = subprocess.run([HOSTCP, "select", str(tmp_path / "missing.csv"), "--out", str(out)],
                         capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "no such file" in bad.stderr


# ------------------------------------------------------------------ settings, help, progress, curve
@pytest.mark.parametrize(("text", "value"), [("True", True), ("False", False), ("true", True),
                                              ("false", False), ("1", True), ("0", False)])
def test_set_reads_a_bool_setting_as_a_bool(text, value):
    from core.cli import method_settings, parse_settings

    got = parse_settings([f"learn_phi={text}", "epochs=3", "gamma=0.1", "solver=moreau"],
                         method_settings("hostcp"))
    assert got == {"learn_phi": value, "epochs": 3, "gamma": 0.1, "solver": "moreau"}
    assert type(got["learn_phi"]) is bool and type(got["epochs"]) is int


def test_set_reads_a_dotted_key_into_the_nested_scale_settings():
    from core.cli import method_settings, parse_settings
    from core.valuation import get_method

    known = method_settings("hostcp")
    scale_keys = {"scale.solve_group", "scale.learn_sample", "scale.score_sample", "scale.swap_batches"}
    assert scale_keys <= set(known)
    assert "scale" not in known and "start" not in known and "learn_sample" not in known
    got = parse_settings(["scale.learn_sample=50", "epochs=1", "scale.solve_group=4"], known)
    assert got == {"scale": {"learn_sample": 50, "solve_group": 4}, "epochs": 1}
    scale = get_method("hostcp", **got).config.scale
    assert (scale.learn_sample, scale.solve_group, scale.swap_batches) == (50, 4, 3_000)
    assert parse_settings(["scale.solve_group=16"]) == {"scale": {"solve_group": 16}}  # untyped (benchmarks)


def test_a_stored_run_with_settings_that_are_gone_runs_again_without_them(caplog):
    """Runs stored before the losing knobs left HostCPConfig: those keys are dropped (logged)."""
    from core.settings import current_settings
    from core.valuation import get_method

    old = {"start": "online", "quality_weight": True, "epochs": 1, "learn_sample": 60,
           "scale": {"swap_batches": 5, "bogus": 1}}
    with caplog.at_level("WARNING", logger="core.settings"):
        got = current_settings("hostcp", old)
    assert got == {"epochs": 1, "scale": {"learn_sample": 60, "swap_batches": 5}}
    dropped = " ".join(r.getMessage() for r in caplog.records)
    assert "start='online'" in dropped and "quality_weight=True" in dropped and "scale.bogus=1" in dropped
    assert get_method("hostcp", **got).config.scale.learn_sample == 60
    assert current_settings("knn_shapley", {"n_neighbors": 3, "k": 1}) == {"n_neighbors": 3}


def test_select_help_shows_defaults_and_method_names(capsys):
    with pytest.raises(SystemExit):
        main(["select", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 0.1)" in text and "(default: hostcp)" in text and "(default: 0.2)" in text
    from core.valuation import available_methods

    assert len(available_methods()) >= 7
    for name in available_methods():
        assert f"{name}:" in text
    assert "(default: None)" not in text


def test_progress_without_a_message_has_no_dangling_colon():
    import io

    from core.cli import _ProgressPrinter

    stream = io.StringIO()
    printer = _ProgressPrinter(stream)
    printer.show("embedding", 0.0, "", None)
    printer.show("embedding", 0.5, "batch 2/4", None)
    assert stream.getvalue().splitlines() == ["  0% embedding", " 50% embedding: batch 2/4"]


def test_progress_never_prints_an_empty_line(tmp_path, capsys):
    """No '0% starting:' while the job has not reported, no dangling colon for a stage without a
    message. A job that reports slowly enough to be polled (a real select of a small file can end
    before the first poll, which made the old form of this test pass or fail by machine load)."""
    import time

    from core.cli import _run_job
    from core.store import Store

    def work(reporter):
        time.sleep(0.6)  # polled several times in the 'starting' state
        reporter.report("selection", 0.5, "")
        time.sleep(0.6)
        reporter.report("selection", 0.75, "swap pass 1/2")
        time.sleep(0.6)
        return {}

    _run_job(Store(tmp_path / "p.sqlite"), "selection", work)
    assert capsys.readouterr().err.splitlines() == [" 50% selection", " 75% selection: swap pass 1/2"]


def test_a_one_seed_curve_prints_no_nan(small_csv, tmp_path, capsys):
    from core.cli import curve_summary

    out = tmp_path / "curve"
    assert main(["curve", str(small_csv), "--out", str(out), "--methods", "random", "--budgets", "0.2",
                 "--seeds", "1"]) == 0
    printed = capsys.readouterr().out
    assert "NaN" not in printed and "nan" not in printed and "random" in printed
    table = pd.read_csv(out / "curve.csv")
    two = pd.concat([table, table.assign(seed=1, accuracy=table["accuracy"] - 0.1)])
    assert "std" in curve_summary(two) and "std" not in curve_summary(table)


# ------------------------------------------------------------------ shared store, export, columns
def _select_random(data: Path, out: Path, *extra: str) -> dict:
    argv = ["select", str(data), "--out", str(out), "--method", "random", "--budget", "0.2", *extra]
    assert main(argv) == 0
    return json.loads((out / "project.json").read_text())


def test_export_uses_the_run_select_made_and_names_it(small_csv, tmp_path, home, capsys):
    from core.export import run_manifest_path
    from core.store import Store

    out = tmp_path / "out"
    project = _select_random(small_csv, out)
    store = Store(home / "hostcp.sqlite")
    run = store.get_run(project["run_id"])
    newer = store.add_run(project["dataset_id"], method="kcenter", budget=0.5, seed=0, settings={},
                          selected=~run.selected & ~np.isnan(run.value), value=run.value)
    capsys.readouterr()
    assert main(["export", str(out), "--out", str(out / "subset.csv")]) == 0
    said = capsys.readouterr().out
    manifest = json.loads(run_manifest_path(out / "subset.csv").read_text())
    assert manifest["run"]["id"] == run.id != newer and f"run {run.id} (random at 20%)" in said
    assert manifest["dataset"]["id"] == project["dataset_id"]
    assert main(["export", str(out), "--out", str(out / "k.csv"), "--run", str(newer)]) == 0
    assert json.loads(run_manifest_path(out / "k.csv").read_text())["run"]["id"] == newer


def test_store_option_keeps_the_old_layout(small_csv, tmp_path, home):
    out = tmp_path / "out"
    project = _select_random(small_csv, out, "--store", str(out / "hostcp.sqlite"))
    assert (out / "hostcp.sqlite").is_file() and not (home / "hostcp.sqlite").exists()
    assert Path(project["store"]) == (out / "hostcp.sqlite").resolve()
    (out / "project.json").unlink()  # a folder made by an earlier version: the database inside
    assert main(["export", str(out), "--out", str(tmp_path / "subset.csv")]) == 0
    assert len(pd.read_csv(tmp_path / "subset.csv")) == _selection(out)["selected"].sum()


@pytest.mark.parametrize("fmt", ["csv", "parquet", "npz"])
def test_inspect_of_an_export_shows_the_imported_columns(tmp_path, capsys, fmt):
    rng = np.random.default_rng(0)
    names = ["mean radius", "mean texture", "worst area"]
    frame = pd.DataFrame(rng.normal(size=(120, 3)), columns=names)
    frame["label"] = np.where(np.arange(120) % 2, "benign", "malignant")
    data = tmp_path / "cancer.csv"
    frame.to_csv(data, index=False)
    out = tmp_path / "out"
    _select_random(data, out)
    assert main(["export", str(out), "--out", str(out / f"kept.{fmt}"), "--what", "kept"]) == 0
    capsys.readouterr()
    assert main(["inspect", str(data)]) == 0
    before = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Features:")]
    assert main(["inspect", str(out / f"kept.{fmt}")]) == 0
    after = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Features:")]
    assert before == after == [f"Features: {', '.join(names)}"]


def test_select_takes_a_validation_file_of_one_class(small_csv, tmp_path, capsys):
    df = pd.read_csv(small_csv)
    bees = np.flatnonzero(df["label"] == "bee")
    pool = np.setdiff1d(np.arange(len(df)), bees[-20:])
    data, val_path, out = tmp_path / "data.csv", tmp_path / "val.csv", tmp_path / "out"
    df.iloc[pool].to_csv(data, index=False)
    df.iloc[bees[-20:]].to_csv(val_path, index=False)  # the target: bees only (was refused: one class)
    assert main(["select", str(data), "--val", str(val_path), "--out", str(out), "--budget", "0.2",
                 "--set", "epochs=1"]) == 0
    assert "target: shift detected between pool and validation set" in capsys.readouterr().out
    chosen = pd.read_csv(data)["label"][_selection(out)["selected"] == 1]
    assert (chosen == "bee").mean() > 0.5  # by the pool's shares about a third


def test_select_reads_a_validation_file_by_its_own_label_column(small_csv, tmp_path, capsys):
    df = pd.read_csv(small_csv)
    data, val_path, out = tmp_path / "data.csv", tmp_path / "val.csv", tmp_path / "out"
    df.iloc[:180].to_csv(data, index=False)
    df.iloc[180:].rename(columns={"label": "class"}).to_csv(val_path, index=False)
    args = ["select", str(data), "--val", str(val_path), "--out", str(out), "--method", "random"]
    assert main(args) == 2
    assert "Give it with --val-label-column 'class'" in capsys.readouterr().err
    assert main([*args, "--val-label-column", "class"]) == 0
    assert _selection(out)["value"].notna().all()
