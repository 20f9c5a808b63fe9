"""Hostile inputs (issue 9, items 2-5): pixel caps before decoding, no upscaling to an outlier,
duplicate column names, class counts checked up front, and one-line errors."""

from __future__ import annotations

import io
import tracemalloc
import zipfile

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from core.data import LoadLimits, load_dataset, load_demo, summarize
from core.data.dataset import MAX_PROBABILITY_CELLS, Dataset, check_curatable
from core.errors import ArchiveError, DataError

from .conftest import encode, zip_bytes
from .hostile import _npz_claiming


def _zeros(h: int, w: int | None = None) -> bytes:
    return encode(np.zeros((h, w or h), np.uint8))


def _load_zip(members: dict[str, bytes], **kwargs) -> Dataset:
    return load_dataset(("x.zip", zip_bytes(members)), **kwargs)


def _labelled(labels: np.ndarray, n_classes: int | None = None) -> Dataset:
    n = len(labels)
    n_classes = n_classes or int(labels.max()) + 1
    return Dataset(
        name="t",
        ids=np.array([f"r{i}" for i in range(n)]),
        labels=labels.astype(np.int64),
        class_names=tuple(f"c{i}" for i in range(n_classes)),
        features=np.zeros((n, 1), np.float32),
    )


# ---------------------------------------------------------------- item 2: images
def test_an_outlier_never_makes_the_others_upscale():
    # One large and one small image per class: a tie, which went to the larger size (8x8 -> 1000x1000).
    ds = _load_zip({f"{c}/{k}.png": _zeros(s) for c in "ab" for k, s in (("big", 1000), ("small", 8))})
    assert ds.shape == (8, 8, 1)
    assert "2 resized" in ds.origin


def test_the_stored_side_is_capped_keeping_the_aspect_ratio():
    ds = _load_zip({f"{c}/{i}.png": _zeros(600, 400) for c in "ab" for i in range(2)})
    assert ds.shape == (256, 171, 1)
    wide = _load_zip({f"{c}/1.png": _zeros(600, 400) for c in "ab"}, limits=LoadLimits(max_image_side=1000))
    assert wide.shape == (600, 400, 1)
    assert _load_zip({f"{c}/1.png": _zeros(600, 400) for c in "ab"}, image_size=(300, 300)).shape == (
        300,
        300,
        1,
    )


@pytest.mark.parametrize(
    ("limits", "needles"),
    [
        (
            LoadLimits(max_decoded_pixels=3_000_000),
            ["4,000,000 pixels in all", "max_decoded_pixels (3,000,000)"],
        ),
        (
            LoadLimits(max_total_pixels=200_000),
            ["stored at 256x256x1 make 262,144", "max_total_pixels (200,000)"],
        ),
    ],
)
def test_total_limits_are_checked_before_any_image_is_decoded(monkeypatch, limits, needles):
    import core.data.images as images

    def no_decoding(*args, **kwargs):
        raise AssertionError("an image was decoded before the limits were checked")

    monkeypatch.setattr(images, "_decode_one", no_decoding)
    with pytest.raises(ArchiveError) as info:
        _load_zip({f"{c}/{i}.png": _zeros(1000) for c in "ab" for i in range(2)}, limits=limits)
    message = str(info.value)
    assert "nothing was decoded" in message
    for needle in needles:
        assert needle in message, message


def test_images_are_decoded_one_at_a_time_into_the_stack():
    # 12 images of 1500x1500: decoding them all first held 27 MB of arrays; now one at a time.
    members = {f"{c}/{i}.png": encode(np.full((1500, 1500), i, np.uint8)) for c in "ab" for i in range(6)}
    data = zip_bytes(members)
    tracemalloc.start()
    try:
        ds = load_dataset(("x.zip", data))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert ds.shape == (256, 256, 1)
    assert peak < len(data) + 8 * 2**20, f"traced peak {peak / 2**20:.1f} MiB"
    assert (ds.images[list(ds.ids).index("b/5.png")] == 5).all()


def test_an_exif_rotated_jpeg_is_sized_upright_from_its_header():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees: stored 20 wide x 10 high, shown 10 wide x 20 high
    buf = io.BytesIO()
    Image.fromarray(np.full((10, 20), 128, np.uint8)).save(buf, "JPEG", exif=exif)
    members = {"a/rot.jpg": buf.getvalue(), "a/p.png": _zeros(20, 10), "b/p.png": _zeros(20, 10)}
    ds = _load_zip(members)
    assert ds.shape == (20, 10, 1) and "resized" not in ds.origin


def test_npz_images_are_stored_within_the_max_side():
    buf = io.BytesIO()
    np.savez(buf, X=np.full((4, 600, 400, 3), 200, np.uint8), y=np.arange(4) % 2)
    ds = load_dataset(("big.npz", buf.getvalue()))
    assert ds.shape == (256, 171, 3) and (ds.images == 200).all()
    assert "max_image_side" in ds.origin


@pytest.mark.parametrize(
    ("shape", "descr", "needle"),
    [
        ((30_000, 256, 256, 3), "|u1", "max_total_pixels"),
        ((10, 8000, 8000), "|u1", "max_image_pixels"),
        ((1_000_000, 2_500), "<f4", "max_feature_values"),
    ],
)
def test_npz_sizes_are_checked_from_the_header_before_loading(shape, descr, needle):
    # The arrays claim GBs but hold 64 bytes: only a header check can name the limit.
    with pytest.raises(ArchiveError, match=needle):
        load_dataset(("claims.npz", _npz_claiming(shape, descr, shape[0])))


def test_embedding_channel_stats_do_not_copy_the_stack(monkeypatch):
    import core.embeddings.batches as batches
    from core.embeddings.batches import channel_stats

    monkeypatch.setattr(batches, "_CHUNK_VALUES", 1 << 20)  # 1 M values a chunk: 2 MB as float64
    images = np.random.default_rng(0).integers(0, 256, (300, 128, 128, 3), dtype=np.uint8)
    tracemalloc.start()
    try:
        mean, std = channel_stats(images)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    flat = images.reshape(-1, 3)
    np.testing.assert_allclose(mean, flat.mean(axis=0, dtype=np.float64), rtol=1e-12)
    np.testing.assert_allclose(std, flat.std(axis=0, dtype=np.float64), rtol=1e-9)
    assert peak < images.nbytes / 2, f"{peak / 2**20:.0f} MiB for a {images.nbytes / 2**20:.0f} MiB stack"


# ---------------------------------------------------------------- item 3: duplicate columns
def test_a_duplicated_label_column_is_refused_not_renamed():
    text = "f0,label,label\n" + "".join(f"{i},{i % 2},{1 - i % 2}\n" for i in range(20))
    with pytest.raises(DataError, match=r"duplicate column names: 'label' \(2 times\)"):
        load_dataset(("t.csv", text.encode()))


def test_duplicate_names_after_a_byte_order_mark():
    with pytest.raises(DataError, match="duplicate column names: 'f0'"):
        load_dataset(("t.csv", "\ufefff0,f0,label\n1,2,a\n3,4,b\n".encode()))


def test_a_parquet_file_with_duplicate_column_names_is_refused():
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        [pa.array([1.0, 2.0]), pa.array([0, 1]), pa.array([1, 0])], names=["f0", "label", "label"]
    )
    buf = io.BytesIO()
    pq.write_table(table, buf)
    with pytest.raises(DataError) as info:
        load_dataset(("t.parquet", buf.getvalue()))
    assert "duplicate column names: 'label' (2 times)" in str(info.value)


def test_distinct_names_that_pandas_would_mangle_alike_still_load():
    ds = load_dataset(("t.csv", b"f0,label,label.1\n1,a,5\n2,b,6\n3,a,7\n"))
    assert ds.shape == (2,) and ds.class_names == ("a", "b")


# ---------------------------------------------------------------- item 4: class counts
def test_ten_thousand_one_example_classes_are_named_up_front():
    ds = _labelled(np.arange(10_000))
    with pytest.raises(DataError) as info:
        check_curatable(ds)
    message = str(info.value)
    assert "10000 of 10000 classes have fewer than 2 examples" in message
    assert "'c0' (1)" in message and "and 9990 more" in message and "\n" not in message


def test_examples_times_classes_is_bounded():
    ds = _labelled(np.arange(20_000) % 10_000)  # two per class: 2 x 10^8 probabilities
    with pytest.raises(DataError, match="200,000,000 class probabilities, over the limit"):
        check_curatable(ds)
    check_curatable(_labelled(np.arange(MAX_PROBABILITY_CELLS // 1000) % 1000))  # exactly at the bound


def test_an_empty_validation_split_is_found_before_the_split():
    ds = _labelled(np.arange(10) % 5)  # 2 per class: round(2 * 0.2) = 0 validation rows each
    with pytest.raises(
        DataError, match="validation split would be empty.*at least 3 examples.*largest class has 2"
    ):
        check_curatable(ds, val_fraction=0.2)
    check_curatable(ds)  # a validation file (hostcp select --val) needs no validation split
    assert any("validation split would be empty" in p for p in summarize(ds).problems)


def test_import_refuses_before_storing(tmp_path):
    from core.pipeline import import_dataset
    from core.store import Store

    store = Store(tmp_path / "p.sqlite")
    with pytest.raises(DataError, match="fewer than 2 examples"):
        import_dataset(store, _labelled(np.array([0, 0, 0, 1, 1, 1, 2])))
    assert store.list_datasets() == []


@pytest.mark.parametrize("demo", ["digits", "digits-noisy", "mixture"])
def test_the_demos_pass_the_up_front_check(demo):
    check_curatable(load_demo(demo), val_fraction=0.15, test_fraction=0.2)


def test_the_fixture_files_pass_the_up_front_check(write_source):
    check_curatable(load_dataset(write_source("zip")[0]), val_fraction=0.2)


# ---------------------------------------------------------------- item 5: one-line errors
def test_five_thousand_unreadable_members_make_one_line():
    data = zip_bytes({f"{'ab'[i % 2]}/{i:04d}.png": b"not an image" for i in range(5000)})
    with pytest.raises(ArchiveError) as info:
        load_dataset(("junk.zip", data))
    message = str(info.value)
    assert "\n" not in message and len(message) < 2000
    assert "5000 of 5000 images could not be read" in message and "and 4990 more" in message


def test_member_names_with_newlines_stay_on_one_line():
    data = zip_bytes({"a/x\ny.png": b"junk", "b/ok.png": _zeros(8)})
    with pytest.raises(ArchiveError) as info:
        load_dataset(("nl.zip", data))
    assert "\n" not in str(info.value) and "a/x\\ny.png" in str(info.value)


def test_a_huge_cell_is_quoted_short():
    with pytest.raises(DataError) as info:
        load_dataset(("t.csv", b"f,label\n" + b"x" * 200_000 + b",a\n2,b\n"))
    assert len(str(info.value)) < 1000




def test_a_corrupt_zip_member_is_one_line():
    data = zip_bytes({"a/1.png": _zeros(8), "b/2.png": _zeros(8)}, compression=zipfile.ZIP_STORED)
    broken = data.replace(b"IEND", b"IENX", 1)
    with pytest.raises(ArchiveError) as info:
        load_dataset(("c.zip", broken))
    assert "\n" not in str(info.value)


def test_a_frame_too_large_is_refused_after_parsing():
    frame = pd.DataFrame({"f": np.arange(30.0), "label": np.arange(30) % 2})
    with pytest.raises(ArchiveError, match="max_feature_values"):
        load_dataset(("t.csv", frame.to_csv(index=False).encode()), limits=LoadLimits(max_feature_values=50))
