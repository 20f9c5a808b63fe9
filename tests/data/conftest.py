"""Fixtures for the data tests: sklearn digits written out as ZIP, CSV, Parquet and NPZ files."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.datasets import load_digits

PER_CLASS = 20  # digits per class in the fixture files (200 examples in all)

FORMATS = ["zip", "zip-top", "csv", "parquet", "npz-features", "npz-images", "csv-images"]


@pytest.fixture(scope="session")
def digits20() -> dict:
    """The first 20 sklearn digits of each class: images (200, 8, 8) uint8 0..255 and labels."""
    bunch = load_digits()
    idx = np.concatenate([np.flatnonzero(bunch.target == c)[:PER_CLASS] for c in range(10)])
    images = np.round(bunch.images[idx] * (255 / 16)).astype(np.uint8)
    return {"images": images, "labels": bunch.target[idx].astype(np.int64)}


def encode(arr: np.ndarray, fmt: str = "PNG", **kwargs) -> bytes:
    """Encode an array (H, W) or (H, W, C) uint8 as image bytes."""
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def zip_bytes(members, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """ZIP in memory from ``{name: bytes}`` or ``[(name or ZipInfo, bytes), ...]``."""
    items = members.items() if isinstance(members, dict) else members
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in items:
            zf.writestr(name, data)
    return buf.getvalue()


@pytest.fixture
def make_zip() -> Callable:
    """Factory: members -> ZIP bytes."""
    return zip_bytes


@pytest.fixture
def make_image() -> Callable:
    """Factory: array, format -> encoded image bytes."""
    return encode


def digit_paths(labels: np.ndarray, prefix: str = "") -> list[str]:
    """Archive paths ``{prefix}{label}/{i:03d}.png`` of the fixture digits."""
    return [f"{prefix}{y}/{i:03d}.png" for i, y in enumerate(labels)]


@pytest.fixture(scope="session")
def digits_zip(digits20) -> bytes:
    """The fixture digits as a PNG ZIP of class folders ``0/000.png``."""
    paths = digit_paths(digits20["labels"])
    return zip_bytes({p: encode(im) for p, im in zip(paths, digits20["images"], strict=True)})


@pytest.fixture
def write_source(tmp_path, digits20, digits_zip) -> Callable:
    """Factory: format name -> (path, load_dataset kwargs) of the fixture digits in that format."""
    images, labels = digits20["images"], digits20["labels"]
    flat = images.reshape(len(images), -1)
    columns = [f"px{j}" for j in range(flat.shape[1])]

    def write(fmt: str) -> tuple:
        if fmt == "zip":
            path = tmp_path / "digits.zip"
            path.write_bytes(digits_zip)
            return path, {}
        if fmt == "zip-top":
            paths = digit_paths(labels, prefix="digits/")
            data = zip_bytes({p: encode(im) for p, im in zip(paths, images, strict=True)})
            path = tmp_path / "digits.zip"
            path.write_bytes(data)
            return path, {}
        frame = pd.DataFrame(flat, columns=columns)
        frame["label"] = labels
        if fmt == "csv":
            path = tmp_path / "digits.csv"
            frame.to_csv(path, index=False)
            return path, {}
        if fmt == "parquet":
            path = tmp_path / "digits.parquet"
            frame.to_parquet(path)
            return path, {}
        if fmt in ("npz-features", "npz-images"):
            path = tmp_path / "digits.npz"
            x = flat.astype(np.float32) if fmt == "npz-features" else images
            np.savez(path, X=x, y=labels)
            return path, {}
        if fmt == "csv-images":
            zip_path = tmp_path / "images.zip"
            zip_path.write_bytes(digits_zip)
            path = tmp_path / "index.csv"
            pd.DataFrame({"file": digit_paths(labels), "label": labels}).to_csv(path, index=False)
            return path, {"image_column": "file", "images_zip": zip_path}
        raise ValueError(fmt)

    return write
