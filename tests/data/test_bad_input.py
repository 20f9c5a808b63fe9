"""Every kind of bad input gets a specific DataError/ArchiveError saying what, where and how to fix."""

from __future__ import annotations

import io
import stat
import warnings
import zipfile

import numpy as np
import pandas as pd
import pytest

from core.data import LoadLimits, load_dataset, load_torchvision
from core.errors import ArchiveError, ConfigError, DataError

from .conftest import encode, zip_bytes

IMG = encode(np.arange(64, dtype=np.uint8).reshape(8, 8))
NOISE = encode(np.random.default_rng(0).integers(0, 256, (32, 32), dtype=np.uint8))
TWO_CLASSES = {"a/1.png": IMG, "b/2.png": IMG}


def upload(name: str, data: bytes, **kwargs) -> tuple:
    """A (source, kwargs) pair for an in-memory upload."""
    return (name, data), kwargs


def csv(text: str, **kwargs) -> tuple:
    """A CSV upload from text."""
    return upload("table.csv", text.encode(), **kwargs)


def npz(**arrays) -> tuple:
    """An NPZ upload holding ``arrays``."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return upload("arrays.npz", buf.getvalue())


def patch_central(data: bytes, offset: int, value: bytes) -> bytes:
    """Overwrite bytes of the first central-directory entry (flags at 8, method at 10)."""
    at = data.index(b"PK\x01\x02") + offset
    return data[:at] + value + data[at + len(value) :]


def with_duplicates() -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name
        return zip_bytes([("a/1.png", IMG), ("a/1.png", IMG), ("b/1.png", IMG)])


def with_symlink() -> bytes:
    info = zipfile.ZipInfo("a/link.png")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return zip_bytes([("b/1.png", IMG), (info, b"/etc/passwd")])


def with_corrupt_member() -> bytes:
    data = zip_bytes({"a/1.png": IMG, "b/2.png": IMG}, compression=zipfile.ZIP_STORED)
    at = data.index(IMG) + len(IMG) // 2  # inside the stored data of a/1.png
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]


def bomb_zip() -> bytes:
    return zip_bytes({"a/1.png": IMG, "b/bomb.png": bytes(5 << 20)})


def bomb_npz() -> tuple:
    buf = io.BytesIO()
    np.savez_compressed(buf, X=np.zeros((1000, 2000)), y=np.arange(1000) % 2)
    return upload("bomb.npz", buf.getvalue())


def parquet_with_nan() -> tuple:
    buf = io.BytesIO()
    pd.DataFrame({"f": [1.0, np.nan, 3.0], "label": [0, 1, 0]}).to_parquet(buf)
    return upload("t.parquet", buf.getvalue())


def npz_object() -> tuple:
    buf = io.BytesIO()
    np.savez(buf, X=np.array([{"a": 1}, {"b": 2}], dtype=object), y=np.array([0, 1]))
    return upload("obj.npz", buf.getvalue())


def image_table(path: str, **extra) -> tuple:
    return csv(
        f"file,label\n0/000.png,0\n{path},1\n",
        image_column="file",
        images_zip=("img.zip", zip_bytes({"0/000.png": IMG, "1/001.png": IMG})),
        **extra,
    )


def case(case_id: str, build, error: type, needles: list[str]):
    """One bad-input case: a builder of (source, kwargs), the error class, message fragments."""
    return pytest.param(build, error, needles, id=case_id)


SMALL = {"limits": LoadLimits(max_image_pixels=1000)}

CASES = [
    # --- ZIP archives of class folders
    case(
        "empty-archive",
        lambda: upload("e.zip", zip_bytes({})),
        ArchiveError,
        ["contains no images", "no files"],
    ),
    case(
        "only-folders",
        lambda: upload("d.zip", zip_bytes({"a/": b"", "b/": b""})),
        ArchiveError,
        ["contains no images"],
    ),
    case(
        "no-image-files",
        lambda: upload("t.zip", zip_bytes({"a/notes.txt": b"x"})),
        ArchiveError,
        ["contains no images", "'a/notes.txt'"],
    ),
    case(
        "not-a-zip",
        lambda: upload("x.zip", b"this is not a zip file" * 20),
        ArchiveError,
        ["x.zip is not a valid ZIP", "zip -r"],
    ),
    case(
        "truncated-zip",
        lambda: upload("half.zip", zip_bytes(TWO_CLASSES)[:200]),
        ArchiveError,
        ["not a valid ZIP"],
    ),
    case(
        "corrupt-images",
        lambda: upload(
            "c.zip",
            zip_bytes(
                {
                    "a/ok.png": IMG,
                    "a/bad.png": b"garbage",
                    "b/ok.png": IMG,
                    "b/cut.png": NOISE[: len(NOISE) // 2],
                }
            ),
        ),
        ArchiveError,
        [
            "2 of 4 images could not be read",
            "a/bad.png: not a readable",
            "b/cut.png: corrupt",
            "nothing was dropped silently",
        ],
    ),
    case(
        "crc-error",
        lambda: upload("crc.zip", with_corrupt_member()),
        ArchiveError,
        ["1 of 2 images", "a/1.png", "corrupt"],
    ),
    case(
        "single-class",
        lambda: upload("one.zip", zip_bytes({"cat/1.png": IMG, "cat/2.png": IMG})),
        DataError,
        ["single class folder ('cat')", "at least two classes"],
    ),
    case(
        "images-outside-class-folders",
        lambda: upload("l.zip", zip_bytes({"loose.png": IMG, "a/1.png": IMG, "b/1.png": IMG})),
        ArchiveError,
        ["outside class folders", "'loose.png'"],
    ),
    case(
        "path-traversal",
        lambda: upload("p.zip", zip_bytes({**TWO_CLASSES, "../evil.png": IMG})),
        ArchiveError,
        ["escape the archive", "'../evil.png'", "no '..'"],
    ),
    case(
        "absolute-path",
        lambda: upload("p.zip", zip_bytes({**TWO_CLASSES, "/etc/x.png": IMG})),
        ArchiveError,
        ["escape the archive", "'/etc/x.png'"],
    ),
    case(
        "drive-letter",
        lambda: upload("p.zip", zip_bytes({**TWO_CLASSES, "C:/x.png": IMG})),
        ArchiveError,
        ["escape the archive", "'C:/x.png'"],
    ),
    case(
        "backslash-traversal",
        lambda: upload("p.zip", zip_bytes({**TWO_CLASSES, "a\\..\\..\\x.png": IMG})),
        ArchiveError,
        ["escape the archive"],
    ),
    case(
        "image-pixel-bomb",
        lambda: upload(
            "big.zip", zip_bytes({"a/1.png": encode(np.zeros((40, 40), np.uint8)), "b/1.png": IMG}), **SMALL
        ),
        ArchiveError,
        ["a/1.png: 40x40 = 1600 pixels", "max_image_pixels", "not decoded"],
    ),
    case(
        "uncompressed-size-limit",
        lambda: upload("u.zip", zip_bytes(TWO_CLASSES), limits=LoadLimits(max_uncompressed_bytes=100)),
        ArchiveError,
        ["would expand to", "nothing was extracted", "max_uncompressed_bytes"],
    ),
    case(
        "ratio-bomb",
        lambda: upload("bomb.zip", bomb_zip()),
        ArchiveError,
        ["decompression bomb", "'b/bomb.png", "max_ratio"],
    ),
    case(
        "upload-size-limit",
        lambda: upload("s.zip", zip_bytes(TWO_CLASSES), limits=LoadLimits(max_upload_bytes=100)),
        ArchiveError,
        ["s.zip is", "over the upload limit", "max_upload_bytes"],
    ),
    case(
        "too-many-files",
        lambda: upload(
            "n.zip",
            zip_bytes({f"{c}/{i}.png": IMG for c in "ab" for i in range(5)}),
            limits=LoadLimits(max_files=5),
        ),
        ArchiveError,
        ["10 members, over the limit of 5", "max_files"],
    ),
    case(
        "duplicate-members",
        lambda: upload("dup.zip", with_duplicates()),
        ArchiveError,
        ["duplicate member paths", "'a/1.png'"],
    ),
    case(
        "encrypted-member",
        lambda: upload("enc.zip", patch_central(zip_bytes(TWO_CLASSES), 8, b"\x01\x00")),
        ArchiveError,
        ["password-protected", "'a/1.png'"],
    ),
    case(
        "symlink-member",
        lambda: upload("lnk.zip", with_symlink()),
        ArchiveError,
        ["symbolic links", "a/link.png"],
    ),
    case(
        "unsupported-compression",
        lambda: upload("m.zip", patch_central(zip_bytes(TWO_CLASSES), 10, b"\x09\x00")),
        ArchiveError,
        ["unsupported compression method", "method 9", "Deflate"],
    ),
    case(
        "unsupported-image-format",
        lambda: upload("g.zip", zip_bytes({**TWO_CLASSES, "a/anim.gif": b"GIF89a"})),
        ArchiveError,
        ["not supported", "'a/anim.gif'", ".png"],
    ),
    # --- CSV / Parquet tables
    case(
        "missing-label-column",
        lambda: csv("a,b,target\n1,2,x\n3,4,y\n"),
        DataError,
        ["no label column 'label'", "Columns present: 'a', 'b', 'target'", "Choose 'target' as the label"],
    ),
    case(
        "misnamed-label-column",
        lambda: csv("a,Label\n1,x\n3,y\n"),
        DataError,
        ["Did you mean 'Label'", "Choose 'Label' as the label column"],
    ),
    case(
        "unguessable-label-column",
        lambda: csv("a,b,zzz\n1,2,x\n"),
        DataError,
        ["no label column", "Choose the column that holds the classes"],
    ),
    case(
        "non-numeric-feature",
        lambda: csv("a,colour,label\n1,red,x\n2,blue,y\n"),
        DataError,
        ["not numeric: 'colour' (row 1 (line 2): 'red')", "Drop or encode"],
    ),
    case(
        "nan-feature",
        lambda: csv("f1,f2,label\n1,2,x\n3,4,y\n,6,x\n"),
        DataError,
        ["'f1' (NaN/empty at row 3 (line 4))", "dropna"],
    ),
    case(
        "inf-feature",
        lambda: csv("f1,f2,label\n1,inf,x\n3,-inf,y\n"),
        DataError,
        ["'f2' (infinite or too large at rows 1 (line 2), 2 (line 3))"],
    ),
    case(
        "nan-and-inf",
        lambda: csv("f1,f2,label\n1,inf,x\n3,,y\n"),
        DataError,
        ["1 feature column(s): 'f2' (NaN/empty at row 2 (line 3); infinite or too large at row 1 (line 2))"],
    ),
    case(
        "float32-overflow",
        lambda: csv("f1,label\n1,1e39\n2,5\n", label_column="f1"),
        DataError,
        ["'label' (infinite or too large at row 1 (line 2))"],
    ),
    case("nan-parquet", parquet_with_nan, DataError, ["t.parquet", "'f' (NaN/empty at row 2)"]),
    case(
        "missing-label",
        lambda: csv("f,label\n1,x\n2,\n3,y\n"),
        DataError,
        ["label column 'label' is empty at row 2 (line 3)"],
    ),
    case(
        "float-labels",
        lambda: csv("f,label\n1,0.5\n2,1.5\n"),
        DataError,
        ["non-integer numbers", "regression"],
    ),
    case("empty-csv", lambda: csv(""), DataError, ["table.csv is empty"]),
    case("blank-csv", lambda: csv("\n\n  \n"), DataError, ["table.csv is empty"]),
    case("header-only", lambda: csv("a,b,label\n"), DataError, ["no data rows", "'a', 'b', 'label'"]),
    case(
        "single-class-csv", lambda: csv("a,label\n1,x\n2,x\n"), DataError, ["same label ('x')", "two classes"]
    ),
    case(
        "duplicate-ids",
        lambda: csv("id,f,label\nu1,1,x\nu2,2,y\nu1,3,x\n"),
        DataError,
        ["duplicate ids", "'u1' at rows 1 (line 2), 3 (line 4)"],
    ),
    case(
        "missing-ids", lambda: csv("id,f,label\nu1,1,x\n,2,y\n"), DataError, ["id column is empty at row 2"]
    ),
    case(
        "no-feature-columns",
        lambda: csv("id,label\nu1,x\nu2,y\n"),
        DataError,
        ["no feature columns", "image_column"],
    ),
    case(
        "ragged-csv",
        lambda: csv("a,label\n1,x\n2,y,extra,fields\n"),
        DataError,
        ["could not be parsed as CSV"],
    ),
    case("non-utf8-csv", lambda: upload("t.csv", b"a,label\n1,caf\xe9\n"), DataError, ["not UTF-8"]),
    case(
        "corrupt-parquet",
        lambda: upload("t.parquet", b"PAR1 not really"),
        DataError,
        ["not a readable Parquet"],
    ),
    # --- image paths in a table
    case(
        "image-path-traversal",
        lambda: image_table("../1/001.png"),
        ArchiveError,
        ["escape the archive", "row 2"],
    ),
    case(
        "image-path-missing",
        lambda: image_table("1/999.png"),
        ArchiveError,
        ["1 image paths are not in img.zip", "row 2: '1/999.png'"],
    ),
    case(
        "duplicate-image-paths",
        lambda: image_table("0/000.png"),
        DataError,
        ["duplicate ids", "'0/000.png' at rows 1"],
    ),
    case(
        "image-column-missing",
        lambda: csv(
            "file,label\na,0\nb,1\n", image_column="path", images_zip=("i.zip", zip_bytes(TWO_CLASSES))
        ),
        DataError,
        ["no image column 'path'", "'file', 'label'"],
    ),
    case(
        "images-zip-not-zip",
        lambda: csv("file,label\na,0\nb,1\n", image_column="file", images_zip=("i.tar", b"")),
        DataError,
        ["images_zip must be a .zip"],
    ),
    case(
        "image-column-without-zip",
        lambda: csv("file,label\na,0\n", image_column="file"),
        ConfigError,
        ["go together"],
    ),
    case(
        "image-column-on-zip",
        lambda: upload("a.zip", zip_bytes(TWO_CLASSES), image_column="f", images_zip=("b.zip", b"")),
        ConfigError,
        ["applies to CSV/Parquet"],
    ),
    # --- NPZ arrays
    case(
        "npz-missing-keys",
        lambda: npz(features=np.zeros((2, 2)), labels=np.array([0, 1])),
        DataError,
        ["lacks array(s) 'X', 'y'", "'features', 'labels'", "np.savez"],
    ),
    case(
        "npz-length-mismatch",
        lambda: npz(X=np.zeros((10, 3)), y=np.arange(9) % 2),
        DataError,
        ["X has 10 rows but y has 9 labels"],
    ),
    case(
        "npz-float-images",
        lambda: npz(X=np.zeros((4, 8, 8)), y=np.arange(4) % 2),
        DataError,
        ["must be uint8", "X is float64", "(X * 255).round()"],
    ),
    case(
        "npz-bad-ndim",
        lambda: npz(X=np.zeros((4, 2, 2, 2, 2), np.uint8), y=np.arange(4) % 2),
        DataError,
        ["X has shape (4, 2, 2, 2, 2)", "Expected (N, D)"],
    ),
    case(
        "npz-four-channels",
        lambda: npz(X=np.zeros((4, 8, 8, 4), np.uint8), y=np.arange(4) % 2),
        DataError,
        ["4 channels", "X[..., :3]"],
    ),
    case(
        "npz-nan",
        lambda: npz(X=np.array([[1.0, np.nan], [2.0, 3.0]]), y=np.array([0, 1])),
        DataError,
        ["'X[:, 1]' (NaN/empty at row 1)"],
    ),
    case(
        "npz-one-hot-labels",
        lambda: npz(X=np.zeros((2, 2)), y=np.eye(2)),
        DataError,
        ["y must be 1-D", "argmax"],
    ),
    case(
        "npz-class-names-range",
        lambda: npz(X=np.zeros((2, 2)), y=np.array([0, 5]), class_names=np.array(["a", "b"])),
        DataError,
        ["class indices 0..5", "class_names has 2 entries"],
    ),
    case(
        "npz-object-arrays", npz_object, DataError, ["could not be read as NPZ", "object arrays are refused"]
    ),
    case(
        "npz-corrupt",
        lambda: upload("x.npz", b"garbage"),
        DataError,
        ["x.npz is not a valid NPZ", "np.savez"],
    ),
    case("npz-bomb", bomb_npz, ArchiveError, ["bomb.npz looks like a decompression bomb"]),
    # --- file types and paths
    case(
        "unsupported-extension",
        lambda: upload("data.txt", b"1,2"),
        DataError,
        ["unsupported file type '.txt'", ".zip, .csv, .parquet"],
    ),
    case("no-extension", lambda: upload("data", b"1,2"), DataError, ["'(no extension)'"]),
    case(
        "file-not-found",
        lambda: ("/no/such/dir/data.csv", {}),
        DataError,
        ["File not found: /no/such/dir/data.csv"],
    ),
]


@pytest.mark.parametrize(("build", "error", "needles"), CASES)
def test_bad_input_gets_one_specific_line(build, error, needles):
    source, kwargs = build()
    with pytest.raises(error) as info:
        load_dataset(source, **kwargs)
    message = str(info.value)
    for needle in needles:
        assert needle in message, f"{needle!r} not in: {message}"
    assert "\n" not in message and len(message) < 1500, message  # one line, bounded


def test_every_error_is_a_value_error_for_the_ui():
    assert issubclass(ArchiveError, DataError) and issubclass(DataError, ValueError)


def test_folder_and_oversized_paths(tmp_path):
    with pytest.raises(DataError, match="is a folder. Zip it first"):
        load_dataset(tmp_path / ".." / tmp_path.name)
    path = tmp_path / "big.csv"
    path.write_text("a,label\n" + "1,x\n2,y\n" * 100)
    with pytest.raises(ArchiveError, match="over the upload limit"):
        load_dataset(path, limits=LoadLimits(max_upload_bytes=500))


@pytest.mark.parametrize("source", [123, None, ("a.csv",), ("a.csv", "not bytes"), (b"a.csv", b"x")])
def test_wrong_source_type_is_a_type_error(source):
    with pytest.raises(TypeError, match="bytes|path"):
        load_dataset(source)


@pytest.mark.parametrize("name", ["MNIST", "fashionmnist", "CIFAR10"])
def test_torchvision_missing_files_says_how_to_get_them(tmp_path, name):
    with pytest.raises(DataError) as info:
        load_torchvision(name, tmp_path)
    message = str(info.value)
    assert "were not found under" in message and str(tmp_path) in message
    assert "download=True" in message
    assert not any(tmp_path.iterdir()), "nothing may be downloaded or created"


def test_torchvision_unknown_name(tmp_path):
    with pytest.raises(DataError, match="Unknown torchvision dataset 'SVHN'.*MNIST"):
        load_torchvision("SVHN", tmp_path)
