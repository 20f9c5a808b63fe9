"""A catalogue of hostile inputs as files, for ``benchmarks/hostile_inputs.py`` and the CLI tests.

Each :class:`Hostile` writes one input into a folder and says what ``hostcp inspect``
and ``hostcp select`` must do with it: refuse it (exit 2, one line on stderr) or
accept it within the memory bound. The loader cases of ``test_bad_input.py`` that
need no load options are reused as they are (:func:`bad_input_cases`); the rest
are built here: bombs, huge and mixed images, duplicate columns, 10,000 classes,
unreadable members, crafted headers, truncated and 0-byte files.
"""

from __future__ import annotations

import functools
import io
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .conftest import encode, zip_bytes
from .test_bad_input import CASES

__all__ = ["MAXIMAL_ACCEPTED", "QUICK_BAD", "Hostile", "bad_input_cases", "catalogue", "own_cases"]

REJECT, ACCEPT = "reject", "accept"


@dataclass(frozen=True)
class Hostile:
    """One hostile input: how to write it, and what each command must do with it.

    Attributes:
        name: Short id for tables and test ids.
        build: Writes the input under a folder; returns the path to pass to ``hostcp``.
        args: Extra command-line arguments (e.g. ``--label-column``).
        inspect: ``"reject"`` (exit 2, one stderr line) or ``"accept"`` (exit 0).
        select: The same for ``hostcp select --method random``.
        slow: Left out of ``--quick`` runs (large to build or to run).
    """

    name: str
    build: Callable[[Path], Path]
    args: tuple[str, ...] = ()
    inspect: str = REJECT
    select: str = REJECT
    slow: bool = False
    tags: tuple[str, ...] = field(default=())


def _file(name: str, data: bytes) -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        path = folder / name
        path.write_bytes(data)
        return path

    return build


def _lazy(name: str, make: Callable[[], bytes]) -> Callable[[Path], Path]:
    """Like :func:`_file`, but the bytes are made only when the input is built."""

    def build(folder: Path) -> Path:
        return _file(name, make())(folder)

    return build


def bad_input_cases() -> list[Hostile]:
    """The ``test_bad_input.py`` cases the CLI can take (no load options besides the label column)."""
    out = []
    for param in CASES:
        build, _, _ = param.values
        source, kwargs = build()
        if set(kwargs) - {"label_column"}:
            continue  # custom limits or image columns: not expressible on the command line
        args = ("--label-column", kwargs["label_column"]) if "label_column" in kwargs else ()
        if isinstance(source, tuple):
            name, data = source
            out.append(Hostile(f"bad:{param.id}", _file(name, data), args))
        else:
            out.append(Hostile(f"bad:{param.id}", lambda folder, s=source: Path(s), args))
    return out


# ------------------------------------------------------------------ builders
def _png(arr: np.ndarray) -> bytes:
    return encode(arr, "PNG", compress_level=1)


@functools.lru_cache(maxsize=4)
def _zeros_png(side: int, channels: int = 1) -> bytes:
    shape = (side, side) if channels == 1 else (side, side, channels)
    return _png(np.zeros(shape, np.uint8))


def _gradient(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A colour image that compresses well: R along x, G along y, B constant."""
    yy, xx = np.mgrid[0:h, 0:w]
    arr = np.empty((h, w, 3), np.uint8)
    arr[..., 0] = (xx + seed) % 256
    arr[..., 1] = (3 * yy + seed // 7) % 256
    arr[..., 2] = (13 * seed) % 256
    return arr


def _stored(members: list[tuple[str, bytes]]) -> bytes:
    """A ZIP without compression (PNG and JPEG members do not compress further)."""
    return zip_bytes(members, compression=zipfile.ZIP_STORED)


def _png_header_bomb(width: int, height: int) -> bytes:
    """A valid-looking PNG whose header claims ``width x height`` with almost no data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def _half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _npz_claiming(shape: tuple[int, ...], descr: str, n_labels: int) -> bytes:
    """An NPZ whose ``X.npy`` header claims ``shape`` but holds only a few bytes of data."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": descr, "fortran_order": False, "shape": shape})
    y = io.BytesIO()
    np.save(y, np.arange(n_labels) % 2)
    return _stored([("X.npy", header.getvalue() + b"\0" * 64), ("y.npy", y.getvalue())])


def _parquet(frame_or_table) -> bytes:
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    if isinstance(frame_or_table, pd.DataFrame):
        frame_or_table.to_parquet(buf)
    else:
        pq.write_table(frame_or_table, buf)
    return buf.getvalue()


def _dup_parquet() -> bytes:
    import pyarrow as pa

    n = 40
    cols = [pa.array(np.arange(n, dtype=float)), pa.array(np.arange(n) % 2), pa.array(1 - np.arange(n) % 2)]
    return _parquet(pa.table(cols, names=["f0", "label", "label"]))


def _table(n: int = 40, classes: int = 2, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(n, 3)), columns=["f0", "f1", "f2"])
    frame["label"] = np.arange(n) % classes
    return frame


def _csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


def _dup_label_csv() -> bytes:
    frame = _table()
    text = _csv(frame[["f0", "label"]]).decode().splitlines()
    rows = [f"{line},{1 - int(line.rsplit(',', 1)[1])}" for line in text[1:]]  # the copy is the opposite
    return ("f0,label,label\n" + "\n".join(rows) + "\n").encode()


def _classes_csv(per_class: int, classes: int = 10_000) -> bytes:
    n = per_class * classes
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(n, 2)).round(3), columns=["f0", "f1"])
    frame["label"] = [f"c{i % classes:05d}" for i in range(n)]
    return _csv(frame)


def _copies(n: int, data: bytes) -> bytes:
    """``n`` copies of one image, alternating between class folders a/ and b/."""
    return _stored([(f"{'ab'[i % 2]}/{i:05d}.png", data) for i in range(n)])


def _per_class(images: dict[str, bytes], copies: int = 2) -> bytes:
    """Class folders a/ and b/, each holding ``copies`` of every given image.

    Two copies of a large and of a small image make a tie of sizes (the outlier
    case) and four examples a class, enough for ``hostcp select`` to hold one out.
    """
    members = [
        (f"{c}/{k}-{name}", data) for c in "ab" for k in range(copies) for name, data in images.items()
    ]
    return _stored(members)


def _jpeg_big() -> bytes:
    small = _gradient(64, 64)
    return _per_class(
        {"big.jpg": encode(_gradient(7000, 7000), "JPEG", quality=80), "s1.jpg": encode(small, "JPEG")}
    )


def _sixteen_bit_big() -> bytes:
    deep = (np.arange(7000, dtype=np.uint16) * 9)[None, :].repeat(7000, axis=0)
    return _per_class({"deep.png": encode(deep, "PNG"), "s.png": _png(np.full((64, 64), 7, np.uint8))})


def _rgba_big() -> bytes:
    rgba = np.zeros((7000, 7000, 4), np.uint8)
    rgba[::7, :, 0] = 255
    rgba[:, ::5, 3] = 255
    return _per_class({"alpha.png": _png(rgba), "s.png": _png(_gradient(64, 64))})


def _bomb_many_small() -> bytes:
    """1,000 members of 900 KB zeros each: each under the per-member ratio floor, 900 MB in all."""
    return zip_bytes({f"{'ab'[i % 2]}/{i}.png": bytes(900_000) for i in range(1000)})


def own_cases() -> list[Hostile]:
    """Hostile inputs built here (the issue's cases among them)."""
    z = _zeros_png
    small8 = _png(np.full((8, 8), 9, np.uint8))
    garbage = b"this is not an image" * 3
    table = _table()
    return [
        # --- images: decoded pixels, outliers, caps
        Hostile(
            "zip:25-zero-7000px-pngs",
            _lazy("zeros25.zip", lambda: _copies(25, z(7000))),
            inspect=ACCEPT,
            select=ACCEPT,
        ),
        Hostile(
            "zip:outlier-7000px-with-8px",
            _lazy("outlier.zip", lambda: _per_class({"big.png": z(7000), "small.png": small8})),
            inspect=ACCEPT,
            select=ACCEPT,
        ),
        Hostile(
            "zip:image-over-pixel-cap",
            _lazy("huge.zip", lambda: _per_class({"huge.png": z(8000), "s.png": small8})),
        ),
        Hostile(
            "zip:png-header-bomb",
            _lazy(
                "hbomb.zip",
                lambda: _per_class({"bomb.png": _png_header_bomb(60_000, 60_000), "s.png": small8}),
            ),
        ),
        Hostile(
            "zip:png-header-under-pil-limit",
            _lazy(
                "hbomb2.zip",
                lambda: _per_class({"bomb.png": _png_header_bomb(10_000, 9_000), "s.png": small8}),
            ),
        ),
        Hostile(
            "zip:decoded-pixels-over-cap",
            _lazy(
                "many_huge.zip",
                lambda: _copies(110, z(7000)),
            ),
        ),
        Hostile(
            "zip:stack-over-cap",
            _lazy(
                "stack.zip",
                lambda: _copies(8000, _png(_gradient(256, 256))),
            ),
        ),
        Hostile(
            "zip:16-bit-7000px", _lazy("deep.zip", _sixteen_bit_big), inspect=ACCEPT, select=ACCEPT, slow=True
        ),
        Hostile("zip:rgba-7000px", _lazy("rgba.zip", _rgba_big), inspect=ACCEPT, select=ACCEPT, slow=True),
        Hostile("zip:jpeg-7000px", _lazy("jpeg.zip", _jpeg_big), inspect=ACCEPT, select=ACCEPT, slow=True),
        # --- unreadable members
        Hostile(
            "zip:5000-unreadable-pngs",
            _file("junk.zip", zip_bytes({f"{'ab'[i % 2]}/{i:04d}.png": garbage for i in range(5000)})),
        ),
        Hostile(
            "zip:newlines-in-member-names",
            _file("nl.zip", zip_bytes({"a/x\ny.png": garbage, "b/p\r\nq.png": garbage, "a/ok.png": small8})),
        ),
        Hostile(
            "zip:gif-named-png",
            _file(
                "gif.zip",
                zip_bytes({"a/1.png": encode(np.zeros((8, 8), np.uint8), "GIF"), "b/1.png": small8}),
            ),
        ),
        Hostile(
            "zip:truncated-jpeg",
            _file(
                "tj.zip",
                zip_bytes(
                    {
                        "a/1.jpg": encode(_gradient(64, 64), "JPEG")[:300],
                        "a/2.png": small8,
                        "b/1.png": small8,
                        "b/2.png": small8,
                    }
                ),
            ),
        ),
        Hostile(
            "zip:zip-named-png",
            _file("nested.zip", zip_bytes({"a/inner.png": zip_bytes({"x.png": small8}), "b/1.png": small8})),
        ),
        Hostile("zip:bomb-of-small-members", _lazy("bomb2.zip", _bomb_many_small)),
        Hostile(
            "zip:3000-one-image-classes",
            _lazy("classes.zip", lambda: zip_bytes({f"c{i:04d}/1.png": small8 for i in range(3000)})),
        ),
        Hostile(
            "zip:500001-members",
            _lazy(
                "members.zip",
                lambda: zip_bytes(
                    {f"a/{i}.txt": b"" for i in range(500_001)}, compression=zipfile.ZIP_STORED
                ),
            ),
            slow=True,
        ),
        # --- 0-byte and truncated files
        Hostile("zip:0-byte", _file("empty.zip", b"")),
        Hostile("parquet:0-byte", _file("empty.parquet", b"")),
        Hostile("npz:0-byte", _file("empty.npz", b"")),
        Hostile("parquet:truncated", _lazy("half.parquet", lambda: _half(_parquet(table)))),
        Hostile(
            "npz:truncated", _lazy("half.npz", lambda: _half(_npz(X=np.zeros((40, 3)), y=np.arange(40) % 2)))
        ),
        # --- text encodings and garbage
        Hostile("csv:utf-16", _file("u16.csv", _csv(table).decode().encode("utf-16"))),
        Hostile("csv:latin-1-header", _file("l1.csv", "café,label\n1,a\n2,b\n".encode("latin-1"))),
        Hostile("csv:binary-garbage", _file("bin.csv", np.random.default_rng(0).bytes(4096))),
        Hostile("csv:nul-in-feature", _file("nul.csv", b"f,label\n1\x00,a\n2,b\n3,a\n4,b\n")),
        Hostile("csv:200kb-cell", _file("cell.csv", b"f,label\n" + b"x" * 200_000 + b",a\n2,b\n3,a\n4,b\n")),
        Hostile("csv:newline-in-column-name", _file("nlcol.csv", b'"f\n0",label\n,a\n2,b\n3,a\n4,b\n')),
        Hostile("csv:1e400-feature", _file("huge.csv", b"f,label\n1e400,a\n2,b\n3,a\n4,b\n")),
        Hostile("csv:inf-strings", _file("inf.csv", b"f,label\ninf,a\n-inf,b\n3,a\n4,b\n")),
        # --- duplicate columns
        Hostile("csv:duplicate-label-column", _lazy("dup_label.csv", _dup_label_csv)),
        Hostile("csv:duplicate-feature-columns", _file("dup_f.csv", b"f0,f0,label\n1,2,a\n3,4,b\n5,6,a\n")),
        Hostile("csv:duplicate-after-bom", _file("bom.csv", "\ufefff0,f0,label\n1,2,a\n3,4,b\n".encode())),
        Hostile("parquet:duplicate-label-column", _lazy("dup.parquet", _dup_parquet)),
        Hostile(
            "parquet:list-column",
            _lazy(
                "lists.parquet", lambda: _parquet(pd.DataFrame({"f": [[1, 2], [3]] * 5, "label": [0, 1] * 5}))
            ),
        ),
        # --- classes
        Hostile("csv:10000-classes-1-row-each", _lazy("c1.csv", lambda: _classes_csv(1))),
        Hostile("csv:10000-classes-2-rows-each", _lazy("c2.csv", lambda: _classes_csv(2))),
        Hostile(
            "csv:empty-validation-split",
            _lazy("tiny.csv", lambda: _csv(_table(10, classes=5))),
            inspect=ACCEPT,
        ),
        # --- NPZ: crafted headers and contents
        Hostile(
            "npz:header-claims-10g-features",
            _lazy("hx.npz", lambda: _npz_claiming((1_000_000, 2_500), "<f4", 1_000_000)),
        ),
        Hostile(
            "npz:header-claims-8000px-images",
            _lazy("hi.npz", lambda: _npz_claiming((10, 8000, 8000), "|u1", 10)),
        ),
        Hostile(
            "npz:header-claims-huge-stack",
            _lazy("hs.npz", lambda: _npz_claiming((30_000, 256, 256, 3), "|u1", 30_000)),
        ),
        Hostile(
            "npz:pickled-labels",
            _lazy("pk.npz", lambda: _npz(X=np.zeros((4, 2)), y=np.array([{"a": 1}, 2, 3, 4], dtype=object))),
        ),
        Hostile(
            "npz:inf-features",
            _lazy(
                "inf.npz",
                lambda: _npz(
                    X=np.array([[1.0, np.inf], [2.0, 3.0], [4.0, 5.0], [6.0, 7.0]]), y=np.arange(4) % 2
                ),
            ),
        ),
        Hostile(
            "npz:600x400-images",
            _lazy(
                "big.npz",
                lambda: _npz(X=np.stack([_gradient(600, 400, i) for i in range(20)]), y=np.arange(20) % 2),
            ),
            inspect=ACCEPT,
            select=ACCEPT,
        ),
    ]


def maximal_accepted(folder: Path) -> Path:
    """The largest image input the default limits accept: a full stack with 8 images at the pixel cap.

    7,629 colour images stored at 256x256x3 (1.5 G pixel values, ``max_total_pixels``),
    8 of them 7000x7000 (49 M pixels each, just under ``max_image_pixels``).
    """
    from core.data.limits import LoadLimits

    limits = LoadLimits()
    side = limits.max_image_side
    n = limits.max_total_pixels // (side * side * 3)
    big = _png(_gradient(7000, 7000))
    members = [(f"{'ab'[i % 2]}/big{i}.png", big) for i in range(8)]
    members += [(f"{'ab'[i % 2]}/{i:05d}.png", _png(_gradient(side, side, i))) for i in range(8, n)]
    path = folder / "maximal.zip"
    path.write_bytes(_stored(members))
    return path


MAXIMAL_ACCEPTED = Hostile("zip:maximal-accepted-images", maximal_accepted, inspect=ACCEPT, select=ACCEPT)


#: The ``test_bad_input.py`` cases a quick run keeps (the loader tests run all of them in-process).
QUICK_BAD = ("bad:corrupt-images", "bad:path-traversal", "bad:symlink-member", "bad:ratio-bomb",
             "bad:ragged-csv", "bad:nan-feature", "bad:npz-object-arrays")  # fmt: skip


def catalogue(*, quick: bool = False) -> list[Hostile]:
    """Every hostile input (``quick``: the fast ones built here and :data:`QUICK_BAD`)."""
    if not quick:
        return own_cases() + bad_input_cases()
    return [c for c in own_cases() if not c.slow] + [c for c in bad_input_cases() if c.name in QUICK_BAD]
