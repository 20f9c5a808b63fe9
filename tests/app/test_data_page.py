"""AppTest of the Data page: first launch, loading a demo, the project surviving a new session."""

from __future__ import annotations

from app_helpers import APP, metric, store_of
from streamlit.testing.v1 import AppTest


def test_first_launch_imports_the_default_demo(app, home):
    assert metric(app, "Examples") == "1,797"
    assert metric(app, "Classes") == "10"
    assert metric(app, "Known noise") == "10.0%"
    assert metric(app, "Shape") == "8×8×1"
    sizes = [int(metric(app, k).replace(",", "")) for k in ("Train", "Validation", "Test")]
    assert sum(sizes) == 1797 and min(sizes) > 0
    assert [d.name for d in store_of(home).list_datasets()] == ["digits-noisy"]
    assert not app.error


def test_loading_a_demo_makes_it_current(app, home):
    app.selectbox(key="demo_name").set_value("mixture")
    app.button(key="load_demo").click().run()
    assert not app.exception, app.exception
    assert any("mixture" in s.value for s in app.subheader)
    assert metric(app, "Examples") == "1,500"
    assert len(app.dataframe) >= 1  # tabular: the first rows
    newest = store_of(home).list_datasets()[0]
    assert app.selectbox(key="dataset_select").value == newest.id


def test_a_new_session_shows_the_same_project(app, home):
    app.selectbox(key="demo_name").set_value("digits")
    app.button(key="load_demo").click().run()
    again = AppTest.from_file(APP, default_timeout=60).run()  # a refresh or a second tab
    assert not again.exception
    assert any(s.value.endswith(" digits") for s in again.subheader)
    assert len(store_of(home).list_datasets()) == 2


def test_switching_the_current_dataset(app, home):
    app.selectbox(key="demo_name").set_value("mixture")
    app.button(key="load_demo").click().run()
    first = store_of(home).list_datasets()[-1].id
    app.selectbox(key="dataset_select").set_value(first).run()
    assert metric(app, "Examples") == "1,797"


def test_a_tables_real_column_names_are_shown(home, tmp_path):
    import numpy as np
    import pandas as pd

    from core.data import load_dataset
    from core.pipeline import import_dataset

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(60, 2)), columns=["mean radius", "worst area"])
    frame["label"] = np.where(np.arange(60) % 2, "benign", "malignant")
    frame.to_csv(tmp_path / "cancer.csv", index=False)
    import_dataset(store_of(home), load_dataset(tmp_path / "cancer.csv"), seed=0)
    app = AppTest.from_file(APP, default_timeout=60).run()  # shows the newest dataset
    assert not app.exception, app.exception
    first_rows = next(d.value for d in app.dataframe if "label" in d.value.columns)
    assert list(first_rows.columns) == ["id", "label", "mean radius", "worst area"]
    assert metric(app, "Shape") == "2 features"


def test_the_split_table_names_its_rows_and_columns(app):
    per_split = next(d.value for d in app.dataframe if "train" in d.value.columns)
    assert per_split.index.name == "class" and per_split.columns.name == "split"
    assert "row_0" not in str(app.dataframe[0].proto)


def test_a_missing_label_column_is_explained_in_the_apps_words(app):
    """The app user sets a box, not a flag: no --label-column or label_column= in the message."""
    app.file_uploader(key="upload_file").upload("t.csv", b"a,b,target\n1,2,x\n3,4,y\n5,6,x\n", "text/csv")
    app.button[[b.label for b in app.button].index("Import file")].click().run()
    message = " ".join(e.value for e in app.error).replace("\\", "")  # shown escaped (markup)
    assert "no label column 'label'" in message and "Choose 'target' as the label column" in message
    assert "--label-column" not in message and "label_column=" not in message


def _csv(rows: list[tuple[float, float, str]]) -> bytes:
    return ("f1,f2,label\n" + "".join(f"{a},{b},{c}\n" for a, b, c in rows)).encode()


def test_a_clean_validation_file_becomes_the_validation_and_test_splits(app, home):
    pool = [(i * 0.1, (i * 7 % 13) * 0.1, "ab"[i % 2]) for i in range(60)]
    target = [(i * 0.2, (i * 5 % 11) * 0.1, "ab"[i % 2]) for i in range(24)]
    app.file_uploader(key="upload_file").upload("pool.csv", _csv(pool), "text/csv")
    app.file_uploader(key="upload_validation").upload("target.csv", _csv(target), "text/csv")
    app.button[[b.label for b in app.button].index("Import file")].click().run()
    assert not app.exception and not app.error, (app.exception, [e.value for e in app.error])
    assert [metric(app, k) for k in ("Examples", "Train", "Validation", "Test")] == ["84", "60", "12", "12"]
    store = store_of(home)
    dataset, split = store.get_dataset(max(d.id for d in store.list_datasets()))
    assert (split.train == range(60)).all() and min(split.val.min(), split.test.min()) >= 60
    assert all(str(i).startswith("val:") for i in dataset.ids[60:])


def test_a_validation_file_with_other_columns_is_refused_in_one_line(app, home):
    app.file_uploader(key="upload_file").upload("pool.csv", _csv([(1, 2, "a"), (3, 4, "b")] * 10), "text/csv")
    app.file_uploader(key="upload_validation").upload("v.csv", b"f1,x,label\n1,2,a\n3,4,b\n", "text/csv")
    app.button[[b.label for b in app.button].index("Import file")].click().run()
    message = " ".join(e.value for e in app.error).replace("\\", "")
    assert "the validation file's feature columns are not the dataset file's" in message
    assert len(store_of(home).list_datasets()) == 1  # nothing stored (the first-launch demo only)


def test_a_validation_file_of_one_class_is_taken(app, home):
    pool = [(i * 0.1, (i * 7 % 13) * 0.1, "ab"[i % 2]) for i in range(60)]
    target = [(i * 0.2, (i * 5 % 11) * 0.1, "b") for i in range(10)]  # the class the user cares about
    app.file_uploader(key="upload_file").upload("pool.csv", _csv(pool), "text/csv")
    app.file_uploader(key="upload_validation").upload("target.csv", _csv(target), "text/csv")
    app.button[[b.label for b in app.button].index("Import file")].click().run()
    assert not app.exception and not app.error, (app.exception, [e.value for e in app.error])
    store = store_of(home)
    dataset, split = store.get_dataset(max(d.id for d in store.list_datasets()))
    assert set(dataset.labels[split.val]) == {dataset.class_names.index("b")}


def test_a_validation_file_with_its_own_label_column_name_is_read_with_its_box(app, home):
    pool = [(i * 0.1, (i * 7 % 13) * 0.1, "ab"[i % 2]) for i in range(60)]
    target = "f1,f2,class\n" + "".join(f"{i * 0.2},{(i * 5 % 11) * 0.1},{'ab'[i % 2]}\n" for i in range(24))
    app.file_uploader(key="upload_file").upload("pool.csv", _csv(pool), "text/csv")
    app.file_uploader(key="upload_validation").upload("target.csv", target.encode(), "text/csv")
    app.button[[b.label for b in app.button].index("Import file")].click().run()
    message = " ".join(e.value for e in app.error).replace("\\", "")
    assert "Choose 'class' as the validation set's label column" in message  # the box to set, by name
    app.text_input(key="val_label_column").input("class")
    app.button[[b.label for b in app.button].index("Import file")].click().run()
    assert not app.exception and not app.error, (app.exception, [e.value for e in app.error])
    assert [metric(app, k) for k in ("Train", "Validation", "Test")] == ["60", "12", "12"]
