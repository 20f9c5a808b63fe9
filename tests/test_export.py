"""Export: manifest content, ZIP/CSV/Parquet files, atomic writes, round trip through load_dataset."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.datasets import load_digits

import core.export as export_mod
from core.data import load_dataset
from core.data.dataset import Dataset
from core.errors import ExportError
from core.export import MANIFEST_COLUMNS, build_manifest, export_dataset, load_export
from core.files import TEMP_FOLDER
from core.pipeline import import_dataset
from core.store import Store


def _images(n: int = 60) -> Dataset:
    d = load_digits()
    keep = np.flatnonzero(d.target < 3)[:n]
    images = (d.images[keep] / 16.0 * 255).round().astype(np.uint8)[..., None]
    return Dataset(name="tiny digits", ids=np.array([f"src/{i:03d}.png" for i in range(n)]),
                   labels=d.target[keep].astype(np.int64), class_names=("zero", "one", "two"),
                   images=images)


def _table(n: int = 50) -> Dataset:
    rng = np.random.default_rng(0)
    return Dataset(name="table", ids=np.array([f"r{i}" for i in range(n)]),
                   labels=np.arange(n) % 2, class_names=("ant", "bee"),
                   features=rng.normal(size=(n, 3)).astype(np.float32))


def _prefill(store: Store, dataset: Dataset) -> int:
    """Import, add mislabel scores and a run, and a few decisions."""
    did = import_dataset(store, dataset, seed=0)
    _, split = store.get_dataset(did)
    n = dataset.n
    score = np.linspace(1, 0, n)
    store.add_mislabel_result(did, score=score, flagged=score > 0.9,
                              suggested_label=(dataset.labels + 1) % dataset.n_classes,
                              suggested_confidence=np.full(n, 0.6), noise_rate=0.1, threshold=0.9)
    value = np.full(n, np.nan)
    value[split.train] = np.linspace(1, 0, len(split.train))
    selected = np.zeros(n, bool)
    selected[split.train[:10]] = True
    store.add_run(did, method="hostcp", budget=0.2, seed=0, settings={}, selected=selected,
                  value=value)
    t = split.train
    store.add_decision(did, int(t[0]), "relabel", new_label=int((dataset.labels[t[0]] + 1) % 2),
                       reviewer="alice")
    store.add_decision(did, int(t[1]), "exclude", reviewer="bob")
    store.add_decision(did, int(t[2]), "keep", reviewer="alice")
    return did


@pytest.fixture()
def images_project(tmp_path):
    store = Store(tmp_path / "i.sqlite")
    return store, _prefill(store, _images())


@pytest.fixture()
def table_project(tmp_path):
    store = Store(tmp_path / "t.sqlite")
    return store, _prefill(store, _table())


def test_manifest(images_project):
    store, did = images_project
    dataset, split = store.get_dataset(did)
    m = build_manifest(store, did)
    assert tuple(m.columns[: len(MANIFEST_COLUMNS)]) == MANIFEST_COLUMNS
    assert len(m) == dataset.n
    t = split.train
    assert m.loc[t[0], "decision"] == "relabel" and m.loc[t[0], "reviewer"] == "alice"
    assert m.loc[t[0], "label"] != m.loc[t[0], "original_label"]
    assert m.loc[t[1], "decision"] == "exclude" and m.loc[t[1], "excluded"]
    assert m.loc[t[2], "decision"] == "keep" and m.loc[t[2], "decided_at"]
    assert m["selected"].sum() == 10 and m["value"].isna().sum() == len(split.val) + len(split.test)
    assert m["flagged"].dtype == bool and m["mislabel_score"].between(0, 1).all()
    assert set(m["split"]) == {"train", "val", "test"}


def test_zip_subset_round_trip(images_project, tmp_path):
    store, did = images_project
    dataset, split = store.get_dataset(did)
    labels, excluded = store.effective_labels(did)
    run = store.latest_run(did)
    chosen = np.flatnonzero(run.selected & ~excluded)
    out = export_dataset(store, did, tmp_path / "out" / "subset.zip", what="subset")
    with zipfile.ZipFile(out) as zf:
        names = zf.namelist()
        manifest = pd.read_csv(io.BytesIO(zf.read("tiny digits/manifest.csv")))
    assert sum(n.endswith(".png") for n in names) == len(chosen) == 9  # one of 10 was excluded
    assert manifest["id"].tolist() == dataset.ids[chosen].tolist()
    # re-import with the project's own loader: same images, current labels
    back = load_dataset(out)
    assert back.n == len(chosen)
    by_file = dict(zip(manifest["file"], manifest["id"], strict=True))  # archive path -> id
    row_of = {str(i): r for r, i in enumerate(dataset.ids)}
    assert set(back.ids) == set(by_file)
    for i, path in enumerate(back.ids):
        src = row_of[by_file[path]]
        np.testing.assert_array_equal(back.images[i], dataset.images[src])
        assert back.class_names[back.labels[i]] == dataset.class_names[labels[src]]


def test_kept_csv_and_parquet(images_project, tmp_path):
    store, did = images_project
    n = store.dataset_info(did).n
    csv = pd.read_csv(export_dataset(store, did, tmp_path / "kept.csv", what="kept"))
    pq = pd.read_parquet(export_dataset(store, did, tmp_path / "kept.parquet", what="kept"))
    assert len(csv) == len(pq) == n - 1  # the excluded example is left out
    assert tuple(csv.columns[: len(MANIFEST_COLUMNS)]) == MANIFEST_COLUMNS
    assert csv["id"].tolist() == pq["id"].tolist()
    assert (pq["decision"] == "exclude").sum() == 0
    with pytest.raises(ExportError, match="manifest only"):
        load_export(tmp_path / "kept.csv")


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_tabular_round_trip(table_project, tmp_path, fmt):
    store, did = table_project
    dataset, _ = store.get_dataset(did)
    labels, excluded = store.effective_labels(did)
    out = export_dataset(store, did, tmp_path / f"t.{fmt}", what="kept")
    back = load_export(out)
    direct = load_dataset(out)  # what a user uploading the export gets
    np.testing.assert_array_equal(direct.features, back.features)
    keep = np.flatnonzero(~excluded)
    assert back.ids.astype(str).tolist() == dataset.ids[keep].astype(str).tolist()
    np.testing.assert_allclose(back.features, dataset.features[keep], rtol=1e-6)
    assert [back.class_names[i] for i in back.labels] == [dataset.class_names[i]
                                                          for i in labels[keep]]


def test_failure_leaves_nothing(images_project, tmp_path, monkeypatch):
    store, did = images_project
    out = tmp_path / "x" / "subset.zip"
    out.parent.mkdir()
    out.write_bytes(b"previous export")
    calls = {"n": 0}
    real = export_mod._png

    def flaky(image):
        calls["n"] += 1
        if calls["n"] == 5:
            raise OSError("disk full")
        return real(image)

    monkeypatch.setattr(export_mod, "_png", flaky)
    with pytest.raises(ExportError, match="Nothing was written"):
        export_dataset(store, did, out)
    assert out.read_bytes() == b"previous export"  # the old file is untouched
    assert sorted(p.name for p in out.parent.iterdir()) == ["subset.zip"]  # no temporary left


def test_png_is_lossless(images_project):
    store, did = images_project
    dataset, _ = store.get_dataset(did)
    img = Image.open(io.BytesIO(export_mod._png(dataset.images[0])))
    np.testing.assert_array_equal(np.asarray(img), dataset.images[0][..., 0])


def test_odd_class_names_make_safe_folders():
    assert export_mod._class_folders(("a/b", "..", "A/B", "ok")) == ["a_b", "class_1", "A_B_2", "ok"]


@pytest.mark.parametrize(
    ("kwargs", "name", "match"),
    [
        ({"what": "everything"}, "a.zip", "Unknown export choice 'everything'.*--what subset"),
        ({"fmt": "xlsx"}, "a.zip", "Unknown export format 'xlsx'; choose one of zip, csv, parquet, npz"),
        ({}, "a.txt", "Cannot tell the export format.*hostcp export --format"),
    ],
)
def test_export_errors(images_project, tmp_path, kwargs, name, match):
    """Messages name what the user can set (the CLI's flags), never the function's arguments."""
    store, did = images_project
    with pytest.raises(ExportError, match=match) as err:
        export_dataset(store, did, tmp_path / name, **kwargs)
    assert "fmt" not in str(err.value) and "what=" not in str(err.value)
    assert not (tmp_path / name).exists()


def test_zip_of_tabular_data_is_refused(table_project, tmp_path):
    store, did = table_project
    with pytest.raises(ExportError, match="tabular"):
        export_dataset(store, did, tmp_path / "t.zip")


def test_subset_without_a_run(tmp_path):
    store = Store(tmp_path / "n.sqlite")
    did = import_dataset(store, _table(), seed=0)
    with pytest.raises(ExportError, match="no selection run.*--what kept"):
        export_dataset(store, did, tmp_path / "s.csv", what="subset")
    out = export_dataset(store, did, tmp_path / "k.csv", what="kept")  # no scores, no run: fine
    m = pd.read_csv(out)
    assert len(m) == 50 and not m["selected"].any() and m["mislabel_score"].isna().all()


def test_loader_knows_every_provenance_column():
    """A re-imported tabular export must not read provenance columns as features."""
    from core.data.loaders import EXPORT_ONLY_COLUMNS
    from core.export import EXTRA_COLUMNS, MANIFEST_COLUMNS

    assert set(EXPORT_ONLY_COLUMNS) == set(MANIFEST_COLUMNS + EXTRA_COLUMNS) - {"id", "label"}


#: A child process that exports, hangs after a few images, and is then killed with SIGKILL.
_KILLED_EXPORT = textwrap.dedent("""
    import sys, time
    import core.export as ex
    from core.store import Store

    real, calls = ex._png, [0]

    def hang_on_the_fifth(image):
        calls[0] += 1
        if calls[0] == 5:
            print("writing", flush=True)
            time.sleep(120)
        return real(image)

    ex._png = hang_on_the_fifth
    ex.export_dataset(Store(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
""")


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL and PID probes are POSIX")
def test_a_killed_export_leaves_nothing_after_the_next_export(images_project, tmp_path):
    store, did = images_project
    folder = tmp_path / "exports"
    root = Path(__file__).resolve().parents[1]
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED_EXPORT, str(store.path), str(did), str(folder / "subset.zip")],
        cwd=root, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(root)})
    try:
        assert child.stdout.readline().strip() == "writing"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
        child.stdout.close()
    # the user's folder shows no half-written file; the temporary is in the hidden folder
    assert [p.name for p in folder.iterdir()] == [TEMP_FOLDER]
    assert len(list((folder / TEMP_FOLDER).iterdir())) == 1
    export_dataset(store, did, folder / "kept.csv", what="kept")  # the next export, another file
    assert sorted(p.name for p in folder.iterdir()) == ["kept.csv", "kept.csv.run.json"]  # stale one gone


@pytest.fixture()
def umask_022():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.parametrize("name", ["subset.zip", "subset.csv", "subset.parquet"])
def test_exports_honour_the_umask(images_project, tmp_path, umask_022, name):
    store, did = images_project
    out = export_dataset(store, did, tmp_path / name)
    assert oct(out.stat().st_mode & 0o777) == oct(0o644)


def test_export_creates_a_missing_folder(images_project, tmp_path, umask_022):
    store, did = images_project
    out = export_dataset(store, did, tmp_path / "new" / "deeper" / "kept.csv", what="kept")
    assert out.is_file() and oct(out.parent.stat().st_mode & 0o777) == oct(0o755)


def test_a_failed_export_removes_the_folders_it_made(images_project, tmp_path, monkeypatch):
    store, did = images_project

    def full_disk(image):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export_mod, "_png", full_disk)
    with pytest.raises(ExportError, match="missing folders are created") as err:
        export_dataset(store, did, tmp_path / "new" / "deeper" / "subset.zip")
    assert "check the folder exists" not in str(err.value)
    assert not (tmp_path / "new").exists()  # the folders it made are gone again


def test_export_below_a_file_is_one_clear_error(images_project, tmp_path):
    store, did = images_project
    (tmp_path / "taken").write_text("a file, not a folder")
    with pytest.raises(ExportError, match="Could not write"):
        export_dataset(store, did, tmp_path / "taken" / "kept.csv", what="kept")


def test_cli_export_creates_the_folder_with_umask_permissions(tmp_path, umask_022, capsys):
    from core.cli import main

    project = tmp_path / "project"
    project.mkdir()
    did = _prefill(Store(project / "hostcp.sqlite"), _table())
    out = tmp_path / "not" / "yet" / "kept.csv"
    assert main(["export", str(project), "--out", str(out), "--what", "kept", "--dataset", str(did)]) == 0
    assert out.is_file() and oct(out.stat().st_mode & 0o777) == oct(0o644)
    assert f"wrote {out}" in capsys.readouterr().out


# ------------------------------------------------------------------ run manifest and column names
def _named_csv(tmp_path: Path, n: int = 60) -> Path:
    """A CSV with real feature names, one of them named like a manifest column."""
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(rng.normal(size=(n, 3)), columns=["mean radius", "texture", "value"])
    frame["label"] = np.where(np.arange(n) % 2, "benign", "malignant")
    path = tmp_path / "cancer.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture()
def named_project(tmp_path):
    store = Store(tmp_path / "named.sqlite")
    return store, _prefill(store, load_dataset(_named_csv(tmp_path)))


def test_a_csv_subset_export_carries_a_run_manifest(named_project, tmp_path):
    import hashlib

    import core
    from core.run_manifest import read_run_manifest, run_manifest_path

    store, did = named_project
    run = store.latest_run(did)
    older = store.add_run(did, method="random", budget=0.5, seed=3, settings={"method": "random"},
                          selected=run.selected, value=run.value)
    out = export_dataset(store, did, tmp_path / "subset.csv", what="subset", run_id=run.id)
    assert run_manifest_path(out) == tmp_path / "subset.csv.run.json"
    m = read_run_manifest(out)
    assert m["source"]["file"] == "cancer.csv"
    assert m["source"]["sha256"] == hashlib.sha256((tmp_path / "cancer.csv").read_bytes()).hexdigest()
    assert m["dataset"]["id"] == did
    r = m["run"]
    assert (r["id"], r["method"], r["budget"], r["seed"]) == (run.id, "hostcp", 0.2, 0)
    assert m["run"]["id"] != older and m["run"]["settings"] == run.settings
    mis = store.latest_mislabels(did)
    assert m["mislabels"]["result_id"] == mis.attrs["result_id"]
    assert m["mislabels"]["flagged"] == int(mis["flagged"].sum())
    log_ = store.decisions(did)
    assert m["review"]["decisions_in_force"] == 3
    assert m["review"]["last_decided_at"] == max(d.decided_at for d in log_)
    assert m["tool"]["version"] == core.__version__ and m["created_at"]
    assert (m["export"]["what"], m["export"]["format"], m["export"]["rows"]) == ("subset", "csv", 9)


def test_every_format_carries_the_run_manifest_inside_where_it_can(images_project, named_project, tmp_path):
    import json

    import pyarrow.parquet as pq

    from core.export import PARQUET_RUN_KEY
    from core.run_manifest import read_run_manifest

    store, did = images_project
    out = export_dataset(store, did, tmp_path / "s.zip")
    with zipfile.ZipFile(out) as zf:
        assert json.loads(zf.read("tiny digits/run.json")) == read_run_manifest(out)
    store, did = named_project
    out = export_dataset(store, did, tmp_path / "s.parquet")
    inside = pq.read_schema(out).metadata[PARQUET_RUN_KEY]
    assert json.loads(inside) == read_run_manifest(out)
    out = export_dataset(store, did, tmp_path / "s.npz")
    with np.load(out) as z:
        assert json.loads(str(z["run_manifest"])) == read_run_manifest(out)


@pytest.mark.parametrize("fmt", ["csv", "parquet", "npz"])
def test_a_csv_dataset_exports_in_every_format_that_loads_back_with_its_column_names(named_project, tmp_path,
                                                                                      fmt):
    store, did = named_project
    dataset, _ = store.get_dataset(did)
    assert dataset.feature_names == ("mean radius", "texture", "value")  # kept through the store
    labels, excluded = store.effective_labels(did)
    out = export_dataset(store, did, tmp_path / f"kept.{fmt}", what="kept")
    back = load_export(out)
    keep = np.flatnonzero(~excluded)
    expected = ("mean radius", "texture", "feature_value" if fmt != "npz" else "value")
    assert back.feature_names == expected  # "value" is a manifest column in a table: renamed
    np.testing.assert_allclose(back.features, dataset.features[keep], rtol=1e-6)
    assert back.ids.astype(str).tolist() == dataset.ids[keep].astype(str).tolist()
    assert [back.class_names[i] for i in back.labels] == [dataset.class_names[i] for i in labels[keep]]


def test_an_image_dataset_exports_as_npz_too(images_project, tmp_path):
    store, did = images_project
    dataset, _ = store.get_dataset(did)
    labels, excluded = store.effective_labels(did)
    back = load_export(export_dataset(store, did, tmp_path / "kept.npz", what="kept"))
    keep = np.flatnonzero(~excluded)
    np.testing.assert_array_equal(back.images, dataset.images[keep])
    assert [back.class_names[i] for i in back.labels] == [dataset.class_names[i] for i in labels[keep]]


def test_a_dataset_stored_before_names_were_kept_exports_the_old_columns(table_project, tmp_path):
    """No names stored (an older store): the generated f0, f1... of earlier exports, as before."""
    store, did = table_project
    with store.connect() as conn:
        fname = conn.execute("SELECT data_file FROM datasets WHERE id=?", (did,)).fetchone()[0]
    path = store.files_dir / fname
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files if k != "meta"}  # what an older version wrote
    np.savez_compressed(path, **arrays)
    dataset, _ = store.get_dataset(did)
    assert dataset.feature_names == ("f0", "f1", "f2")
    table = pd.read_csv(export_dataset(store, did, tmp_path / "k.csv", what="kept"))
    assert list(table.columns[-3:]) == ["f0", "f1", "f2"]


def test_a_tabular_zip_names_the_formats_that_work(table_project, tmp_path):
    store, did = table_project
    with pytest.raises(ExportError, match="csv, parquet, npz"):
        export_dataset(store, did, tmp_path / "t.zip")
