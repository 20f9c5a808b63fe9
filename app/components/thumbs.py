"""Example thumbnails: small images scaled up crisply, grids with captions, a row's table view."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image

from app.markup import md

__all__ = ["display_image", "thumbnail_grid", "example_view", "feature_frame"]


def display_image(image: np.ndarray, *, side: int = 96) -> np.ndarray:
    """An ``(H, W, C)`` uint8 image resized so its longer side is ``side`` px (nearest for tiny ones)."""
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    pil = Image.fromarray(img.astype(np.uint8))
    h, w = img.shape[:2]
    scale = side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    resample = Image.NEAREST if max(h, w) <= 32 else Image.BILINEAR
    return np.asarray(pil.convert("RGB").resize(size, resample))


def thumbnail_grid(
    images: Sequence[np.ndarray],
    captions: Sequence[str],
    *,
    columns: int = 8,
    side: int = 72,
    on_open: Callable[[int], None] | None = None,
    keys: Sequence[int] | None = None,
) -> None:
    """Images in rows of ``columns``, each with its caption shown as plain text (escaped Markdown).

    With ``on_open`` and ``keys`` (one example index per image), an "Open" button under
    each image calls ``on_open(key)``: Streamlit images take no clicks.
    """
    for start in range(0, len(images), columns):
        cols = st.columns(columns)
        for j, (col, img, cap) in enumerate(zip(
            cols, images[start : start + columns], captions[start : start + columns], strict=False
        )):
            col.image(display_image(img, side=side), caption=md(cap))
            if on_open is not None and keys is not None:
                key = int(keys[start + j])
                col.button("Open", key=f"thumb_open_{key}", on_click=on_open, args=(key,),
                           use_container_width=True)


def example_view(dataset, index: int, *, side: int = 200) -> None:
    """One example: its image captioned with its id, or its feature row as a one-row table."""
    if dataset.images is not None:
        st.image(display_image(dataset.images[index], side=side), caption=md(dataset.ids[index]))
    else:
        row = feature_frame(dataset, np.array([index]), taken=("id",))
        row.insert(0, "id", [str(dataset.ids[index])])
        st.dataframe(row, hide_index=True)


def feature_frame(dataset, rows: np.ndarray, *, taken: tuple[str, ...] = ()) -> pd.DataFrame:
    """The feature rows ``rows`` under the dataset's own column names (a CSV's header).

    A name that is already a column of the table it joins (``taken``) gets a ``feature_``
    prefix, so the joined table never has two columns of one name.
    """
    names = [f"feature_{c}" if c in taken else c for c in dataset.feature_names]
    return pd.DataFrame(dataset.features[rows], columns=names)
