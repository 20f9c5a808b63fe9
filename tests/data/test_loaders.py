"""Loading real data (sklearn digits) from every format, image conversions, torchvision files, summaries."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from core.data import (
    Dataset,
    DatasetSummary,
    LoadLimits,
    load_dataset,
    load_torchvision,
    summarize,
)
from core.errors import ConfigError

from .conftest import FORMATS


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_round_trips_the_digits(fmt, write_source, digits20):
    path, kwargs = write_source(fmt)
    ds = load_dataset(path, **kwargs)
    assert isinstance(ds, Dataset)
    assert ds.n == 200 and ds.n_classes == 10
    assert ds.class_names == tuple(str(c) for c in range(10))
    assert ds.class_counts() == {str(c): 20 for c in range(10)}
    names = np.array(ds.class_names)[ds.labels]
    np.testing.assert_array_equal(names, digits20["labels"].astype(str))
    if fmt in ("csv", "parquet", "npz-features"):
        assert ds.kind == "tabular" and ds.shape == (64,)
        assert ds.features.dtype == np.float32
        np.testing.assert_array_equal(ds.features, digits20["images"].reshape(200, 64))
    else:
        assert ds.kind == "image" and ds.shape == (8, 8, 1)
        assert ds.images.dtype == np.uint8
        np.testing.assert_array_equal(ds.images[..., 0], digits20["images"])
    assert ds.name == path.stem
    assert len(set(ds.ids)) == 200 and len(ds.sources) == 200


@pytest.mark.parametrize("fmt", FORMATS)
def test_upload_and_path_load_the_same(fmt, write_source):
    path, kwargs = write_source(fmt)
    if "images_zip" in kwargs:
        kwargs["images_zip"] = ("images.zip", kwargs["images_zip"].read_bytes())
    upload = load_dataset((f"C:\\Users\\me\\{path.name}", path.read_bytes()), **kwargs)
    on_disk = load_dataset(path, **kwargs)
    assert upload.name == on_disk.name == path.stem
    np.testing.assert_array_equal(upload.ids, on_disk.ids)
    np.testing.assert_array_equal(upload.labels, on_disk.labels)
    assert upload.content_hash() == on_disk.content_hash()


def test_zip_ids_and_sources_are_archive_paths(write_source):
    ds = load_dataset(write_source("zip-top")[0], name="mine")
    assert ds.name == "mine"
    assert ds.ids[0] == "digits/0/000.png"
    np.testing.assert_array_equal(ds.ids, ds.sources)
    assert all(i.startswith(f"digits/{ds.class_names[y]}/") for i, y in zip(ds.ids, ds.labels, strict=True))
    assert ds.origin.startswith("zip:") and "digits.zip" in ds.origin


@pytest.mark.parametrize(
    ("fmt", "kwargs", "lossless"),
    [
        ("PNG", {}, True),
        ("JPEG", {"quality": 95}, False),
        ("BMP", {}, True),
        ("WEBP", {"lossless": True}, True),
    ],
)
@pytest.mark.parametrize("colour", [False, True])
def test_image_formats(fmt, kwargs, lossless, colour, make_zip, make_image):
    rng = np.random.default_rng(0)
    shape = (16, 12, 3) if colour else (16, 12)
    arrays = {
        f"{c}/{i}.{fmt.lower()}": rng.integers(0, 256, shape, dtype=np.uint8)
        for c in ("cat", "dog")
        for i in range(3)
    }
    data = make_zip({p: make_image(a, fmt, **kwargs) for p, a in arrays.items()})
    ds = load_dataset(("pets.zip", data))
    assert ds.shape == (16, 12, 3 if colour else 1)
    assert ds.class_names == ("cat", "dog")
    assert list(ds.labels) == [0, 0, 0, 1, 1, 1]
    if lossless:
        for i, path in enumerate(ds.ids):
            np.testing.assert_array_equal(ds.images[i].reshape(shape), arrays[path])


def test_any_colour_image_makes_all_rgb(make_zip, make_image):
    grey = np.full((8, 8), 77, np.uint8)
    colour = np.zeros((8, 8, 3), np.uint8)
    colour[..., 0] = 200
    data = make_zip(
        {"a/grey.png": make_image(grey), "b/colour.png": make_image(colour), "b/grey2.png": make_image(grey)}
    )
    ds = load_dataset(("x.zip", data))
    assert ds.shape == (8, 8, 3)
    assert (ds.images[list(ds.ids).index("a/grey.png")] == 77).all()
    np.testing.assert_array_equal(ds.images[list(ds.ids).index("b/colour.png")], colour)
    assert "grey images converted to RGB" in ds.origin


def test_transparent_and_16_bit_images(make_zip, make_image):
    rgba = np.zeros((6, 6, 4), np.uint8)  # fully transparent: composited on white
    rgba[0, 0] = (255, 0, 0, 255)  # one opaque red pixel
    deep = np.full((6, 6), 65535, np.uint16)
    data = make_zip({"a/alpha.png": make_image(rgba), "b/deep.png": make_image(deep)})
    ds = load_dataset(("x.zip", data))
    assert ds.shape == (6, 6, 3)
    alpha = ds.images[0]
    assert tuple(alpha[0, 0]) == (255, 0, 0) and (alpha[1:] == 255).all()
    assert (ds.images[1] == 255).all()


def test_mixed_sizes_resize_to_most_common_or_image_size(make_zip, make_image):
    members = {f"a/{i}.png": make_image(np.full((10, 20), 50, np.uint8)) for i in range(3)}
    members["b/big.png"] = make_image(np.full((40, 40), 200, np.uint8))
    members["b/small.png"] = make_image(np.full((10, 20), 9, np.uint8))
    data = make_zip(members)
    ds = load_dataset(("x.zip", data))
    assert ds.shape == (10, 20, 1)
    assert (ds.images[list(ds.ids).index("b/big.png")] == 200).all()
    assert "1 resized" in ds.origin
    assert load_dataset(("x.zip", data), image_size=16).shape == (16, 16, 1)
    assert load_dataset(("x.zip", data), image_size=(5, 7)).shape == (5, 7, 1)
    with pytest.raises(ConfigError, match="image_size"):
        load_dataset(("x.zip", data), image_size=0)
    with pytest.raises(TypeError, match="image_size"):
        load_dataset(("x.zip", data), image_size="big")


def test_junk_and_non_image_files_are_ignored(make_zip, make_image):
    img = make_image(np.zeros((4, 4), np.uint8))
    data = make_zip(
        {
            "top/a/1.png": img,
            "top/b/2.png": img,
            "top/README.txt": b"hello",
            "__MACOSX/top/a/._1.png": b"junk",
            "top/a/.DS_Store": b"junk",
            "top/b/": b"",
        }
    )
    ds = load_dataset(("x.zip", data))
    assert list(ds.ids) == ["top/a/1.png", "top/b/2.png"]
    assert "ignored 1 non-image files" in ds.origin


def test_string_labels_id_column_and_numeric_label_order(tmp_path):
    frame = pd.DataFrame(
        {
            "id": ["u7", "u3", "u9", "u1"],
            "f1": [0.5, 1.0, 2.0, 3.0],
            "f2": [1, 2, 3, 4],
            "flag": [True, False, True, False],
            "kind": ["zebra", "ant", "zebra", "ant"],
            "num": [10, 2, 10, 2],
        }
    )
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    ds = load_dataset(path, label_column="kind")
    assert ds.class_names == ("ant", "zebra")
    assert list(ds.labels) == [1, 0, 1, 0]
    assert list(ds.ids) == ["u7", "u3", "u9", "u1"]
    assert ds.shape == (4,)  # f1, f2, flag, num
    assert ds.sources[2] == "t.csv:row 3"
    frame.drop(columns="kind").to_csv(path, index=False)
    by_number = load_dataset(path, label_column="num")
    assert by_number.class_names == ("2", "10")  # numeric order, not string order
    assert list(by_number.labels) == [1, 0, 1, 0]


def test_npz_images_channel_first_ids_and_class_names(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (6, 3, 5, 4), dtype=np.uint8)  # (N, C, H, W)
    path = tmp_path / "x.npz"
    np.savez(
        path,
        X=x,
        y=np.array([0, 1, 2, 0, 1, 2]),
        ids=np.array(list("abcdef")),
        class_names=np.array(["red", "green", "blue"]),
    )
    ds = load_dataset(path)
    assert ds.shape == (5, 4, 3)
    np.testing.assert_array_equal(ds.images, np.moveaxis(x, 1, -1))
    assert ds.class_names == ("red", "green", "blue")
    assert list(ds.ids) == list("abcdef")


def _write_idx(path, array: np.ndarray) -> None:
    """Write a uint8 array in MNIST's idx format."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_torchvision_reads_files_on_disk(tmp_path, digits20):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for split in ("train", "t10k"):
        _write_idx(raw / f"{split}-images-idx3-ubyte", digits20["images"])
        _write_idx(raw / f"{split}-labels-idx1-ubyte", digits20["labels"])
    ds = load_torchvision("mnist", tmp_path, train=False, limit=50)
    assert ds.n == 50 and ds.shape == (8, 8, 1) and ds.n_classes == 10
    assert ds.name == "MNIST-test" and ds.class_names[0] == "0 - zero"
    np.testing.assert_array_equal(ds.images[..., 0], digits20["images"][:50])
    with pytest.raises(ConfigError, match="limit"):
        load_torchvision("MNIST", tmp_path, limit=0)


def test_load_limits_are_frozen_and_validated():
    limits = LoadLimits()
    with pytest.raises(dataclasses.FrozenInstanceError):
        limits.max_files = 3
    with pytest.raises(ConfigError, match="max_files"):
        LoadLimits(max_files=0)
    with pytest.raises(ConfigError, match="max_ratio"):
        LoadLimits(max_ratio=0.5)


def test_summary_of_loaded_zip(write_source):
    summary = summarize(load_dataset(write_source("zip")[0]))
    assert isinstance(summary, DatasetSummary)
    assert summary.n_examples == 200 and summary.n_classes == 10 and summary.kind == "image"
    assert summary.shape == (8, 8, 1) and summary.problems == ()
    text = summary.to_text()
    assert "200 examples, 10 classes" in text and "8x8x1 images" in text
    assert "Problems: none found" in text


def test_summary_reports_imbalance_tiny_classes_and_duplicates():
    features = np.arange(130 * 2, dtype=np.float32).reshape(130, 2)
    features[1] = features[0]  # duplicate, same label
    features[125] = features[124]  # duplicate with a conflicting label (class b vs c)
    features[:, 1] = 7.0  # constant column
    labels = np.array([0] * 120 + [1] * 5 + [2] * 5)
    ds = Dataset(
        name="toy",
        ids=np.array([str(i) for i in range(130)]),
        labels=labels,
        class_names=("a", "b", "c", "d"),
        features=features,
    )
    summary = summarize(ds)
    text = "\n".join(summary.problems)
    assert "no examples: d" in text
    assert "tiny classes" in text and "b (5)" in text and "c (5)" in text
    assert "Class imbalance" in text and "'a'" in text
    assert summary.n_duplicates == 2 and summary.n_conflicting == 1
    assert "1 feature columns are constant" in text
    assert "Problems:" in summary.to_text() and "  - " in summary.to_text()
    with pytest.raises(TypeError):
        summarize("toy")


# ------------------------------------------------------------------ feature names and source file
def _named_frame() -> pd.DataFrame:
    frame = pd.DataFrame({"mean radius": [1.0, 2.0, 3.0, 4.0], "texture": [0.5, 0.1, 0.2, 0.3],
                          "label": ["a", "b", "a", "b"]})
    return frame


@pytest.mark.parametrize("fmt", ["csv", "parquet", "npz"])
def test_a_table_keeps_its_feature_names_and_the_file_is_recorded(tmp_path, fmt):
    import hashlib

    frame = _named_frame()
    path = tmp_path / f"t.{fmt}"
    if fmt == "csv":
        frame.to_csv(path, index=False)
    elif fmt == "parquet":
        frame.to_parquet(path, index=False)
    else:
        np.savez(path, X=frame[["mean radius", "texture"]].to_numpy(),
                 y=frame["label"].to_numpy().astype(str), feature_names=np.array(["mean radius", "texture"]))
    ds = load_dataset(path)
    assert ds.feature_names == ("mean radius", "texture")
    assert ds.source_file == path.name
    assert ds.source_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert "Features: mean radius, texture" in summarize(ds).to_text()


def test_arrays_without_names_get_the_generated_ones(tmp_path):
    path = tmp_path / "a.npz"
    np.savez(path, X=np.eye(4), y=np.array([0, 1, 0, 1]))
    assert load_dataset(path).feature_names == ("f0", "f1", "f2", "f3")


def test_npz_feature_names_must_match_the_columns(tmp_path):
    from core.errors import DataError

    path = tmp_path / "a.npz"
    np.savez(path, X=np.eye(4), y=np.array([0, 1, 0, 1]), feature_names=np.array(["a", "b"]))
    with pytest.raises(DataError, match="feature_names has 2 entries"):
        load_dataset(path)


@pytest.mark.parametrize(("names", "match"), [(("a",), "1 feature names for 2"), (("a", "a"), "Duplicate")])
def test_dataset_checks_its_feature_names(names, match):
    from core.errors import DataError

    with pytest.raises(DataError, match=match):
        Dataset(name="t", ids=np.array(["1", "2"]), labels=np.array([0, 1]), class_names=("x", "y"),
                features=np.eye(2, dtype=np.float32), feature_names=names)


def test_constant_columns_are_named():
    ds = Dataset(name="t", ids=np.array(["1", "2", "3"]), labels=np.array([0, 1, 0]), class_names=("x", "y"),
                 features=np.array([[1, 5], [2, 5], [3, 5]], dtype=np.float32), feature_names=("a", "b"))
    assert "1 feature columns are constant ('b')" in "\n".join(summarize(ds).problems)
