"""Uploaded images into one stored ``(N, H, W, C)`` uint8 stack, in bounded memory.

Two passes. The first reads only headers (PIL's ``Image.open`` is lazy): it checks
each image against ``LoadLimits.max_image_pixels``, all of them against
``max_decoded_pixels``, chooses the stored size, and checks the stack against
``max_total_pixels``, all before any pixel is decoded. The second decodes one
image at a time and resizes it straight into the preallocated stack, so a load
holds the stack plus one decoded image, whatever the archive holds.

The stored size is ``image_size`` when given. Otherwise it is the most common
size, ties going to the smaller area, so that one large outlier can never make
every other image be upscaled to it; a size with a side over
``LoadLimits.max_image_side`` is scaled down to fit, keeping its aspect ratio.
"""

from __future__ import annotations

import io
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from core.data.limits import LoadLimits, listing, one_line
from core.errors import ArchiveError, ConfigError

__all__ = ["ImageSource", "decode_images", "fit_side", "fit_stack", "parse_size", "stored_size"]

_PIL_FORMATS = ("PNG", "JPEG", "BMP", "WEBP")
_GREY_MODES = ("1", "L", "LA", "La", "I", "F")  # plus every "I;16..." mode
_ORIENTATION = 0x0112  # EXIF tag; values 5..8 turn the image by 90 degrees
_RESIZE = Image.Resampling.BILINEAR
_REDUCING_GAP = 3.0  # shrink by whole factors first: fast and, per PIL, visually the same


class ImageSource(Protocol):
    """Where images are read from by path (a checked ZIP, see :class:`~core.data.archive.SafeArchive`)."""

    where: str

    def read(self, path: str) -> bytes:
        """The bytes of one member; raises ArchiveError when they are corrupt."""
        ...


@dataclass(frozen=True)
class _Header:
    """What an image's header says: its upright size and whether its mode can hold colour."""

    height: int
    width: int
    colour: bool


class _BadImage(Exception):
    """One image could not be read (collected, then reported together)."""


def decode_images(
    source: ImageSource,
    paths: Sequence[str],
    *,
    limits: LoadLimits,
    image_size: int | tuple[int, int] | None = None,
) -> tuple[np.ndarray, str]:
    """Decode images into one ``(N, H, W, C)`` uint8 stack (see the module docstring for the size).

    If any image is colour every image is stored as RGB (C=3), else C=1; an RGB
    image whose channels are equal counts as grey.

    Returns:
        The image stack and a short note on conversions (for provenance).

    Raises:
        ArchiveError: A limit is exceeded (checked before decoding), or images could
            not be read (the first few are named, with how many more).
        ConfigError, TypeError: A bad ``image_size``.
    """
    target = parse_size(image_size)
    where, n = source.where, len(paths)
    if not n:
        raise ArchiveError(f"{where}: no images to decode.")
    headers, problems = _read_headers(source, paths, limits)
    readable = [h for h in headers if h is not None]
    if readable:  # else every image is a problem, reported below
        h, w = target or stored_size([(x.height, x.width) for x in readable], limits.max_image_side)
        _check_totals(readable, n, (h, w, 3 if any(x.colour for x in readable) else 1), where, limits)
        stack, grey, n_resized = _fill(source, paths, headers, (h, w), problems)
    if problems:
        bad = [problems[i] for i in sorted(problems)]
        raise ArchiveError(
            f"{where}: {len(bad)} of {n} images could not be read: {listing(bad, quote=False, sep='; ')}. "
            "Fix or remove these files and load the archive again (nothing was dropped silently)."
        )
    notes = [f"{h}x{w}x{stack.shape[-1]}"]
    if stack.shape[-1] == 3 and grey.any():
        notes.append("grey images converted to RGB")
    if n_resized:
        notes.append(f"{n_resized} resized from other sizes")
    return stack, ", ".join(notes)


def stored_size(sizes: Sequence[tuple[int, int]], max_side: int) -> tuple[int, int]:
    """``(H, W)`` of the stack for images of ``sizes``: the most common, ties to the smaller, capped.

    A size whose longer side exceeds ``max_side`` is scaled down to fit, keeping the
    aspect ratio (sides at least 1).
    """
    counts = Counter(sizes)
    return fit_side(*min(counts, key=lambda s: (-counts[s], s[0] * s[1], s)), max_side)


def fit_side(h: int, w: int, max_side: int) -> tuple[int, int]:
    """``(h, w)`` scaled down, keeping the aspect ratio, so the longer side is at most ``max_side``."""
    if max(h, w) > max_side:
        scale = max_side / max(h, w)
        h, w = max(1, round(h * scale)), max(1, round(w * scale))
    return int(h), int(w)


def fit_stack(x: np.ndarray, *, max_side: int) -> tuple[np.ndarray, str]:
    """Scale an ``(N, H, W, C)`` uint8 stack down so its longer side is at most ``max_side``.

    Used for image arrays that arrive already stacked (NPZ), so they are stored like
    decoded uploads. One image is resized at a time into the new stack.

    Returns:
        The stack (``x`` itself when it fits) and a note for provenance (``""`` if unchanged).
    """
    n, h, w, c = x.shape
    if max(h, w) <= max_side:
        return x, ""
    th, tw = fit_side(h, w, max_side)
    out = np.empty((n, th, tw, c), dtype=np.uint8)
    for i in range(n):
        im = Image.fromarray(x[i, :, :, 0] if c == 1 else x[i])
        out[i] = np.asarray(im.resize((tw, th), _RESIZE, reducing_gap=_REDUCING_GAP)).reshape(th, tw, c)
    return out, f", resized from {h}x{w} to fit LoadLimits.max_image_side ({max_side})"


def parse_size(image_size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    """Validate ``image_size``: ``None``, a positive side, or a ``(height, width)`` pair."""
    if image_size is None:
        return None
    if isinstance(image_size, int) and not isinstance(image_size, bool):
        size = (image_size, image_size)
    elif (
        isinstance(image_size, tuple | list)
        and len(image_size) == 2
        and all(isinstance(s, int) and not isinstance(s, bool) for s in image_size)
    ):
        size = (int(image_size[0]), int(image_size[1]))
    else:
        raise TypeError(f"image_size must be None, an int or (height, width); got {image_size!r}.")
    if min(size) < 1 or max(size) > 4096:
        raise ConfigError(f"image_size sides must be in [1, 4096]; got {size}.")
    return size


def _read_headers(
    source: ImageSource, paths: Sequence[str], limits: LoadLimits
) -> tuple[list[_Header | None], dict[int, str]]:
    """The header of every image (``None`` where unreadable) and the problems found, by index."""
    headers: list[_Header | None] = []
    problems: dict[int, str] = {}
    for i, path in enumerate(paths):
        try:
            headers.append(_read_header(source.read(path), limits))
        except (ArchiveError, _BadImage) as e:
            headers.append(None)
            problems[i] = f"{_shown(path)}: {_reason(e)}"
    return headers, problems


def _check_totals(
    headers: Sequence[_Header], n: int, stored: tuple[int, int, int], where: str, limits: LoadLimits
) -> None:
    """Raise before decoding when all the images, or the stack of ``n`` at ``stored`` size, are too big."""
    decoded = sum(x.height * x.width for x in headers)
    if decoded > limits.max_decoded_pixels:
        raise ArchiveError(
            f"{where}: the {n} images hold {decoded:,} pixels in all, over LoadLimits.max_decoded_pixels "
            f"({limits.max_decoded_pixels:,}); nothing was decoded. Upload fewer or smaller images, "
            "or raise the limit."
        )
    h, w, c = stored
    if n * h * w * c > limits.max_total_pixels:
        raise ArchiveError(
            f"{where}: {n} images stored at {h}x{w}x{c} make {n * h * w * c:,} pixel values, over "
            f"LoadLimits.max_total_pixels ({limits.max_total_pixels:,}); nothing was decoded. Upload "
            "fewer images, choose a smaller image_size, or raise the limit."
        )


def _fill(
    source: ImageSource,
    paths: Sequence[str],
    headers: Sequence[_Header | None],
    size: tuple[int, int],
    problems: dict[int, str],
) -> tuple[np.ndarray, np.ndarray, int]:
    """Decode every readable image into a new stack; add the ones that fail to ``problems``.

    The stack starts grey and becomes RGB at the first image that really is colour
    (the grey rows are copied into all three channels), so grey sets never take three
    channels and the peak is at most the RGB stack plus its grey third.

    Returns:
        ``(N, H, W, C)`` stack, ``(N,)`` bool "stored grey", number of resized images.
    """
    h, w = size
    stack = np.zeros((len(paths), h, w, 1), dtype=np.uint8)
    grey = np.ones(len(paths), dtype=bool)
    n_resized = 0
    for i, (path, header) in enumerate(zip(paths, headers, strict=True)):
        if header is None:
            continue
        try:
            arr, resized = _decode_one(source.read(path), size)  # (h, w) or (h, w, 3)
        except (ArchiveError, _BadImage) as e:
            problems[i] = f"{_shown(path)}: {_reason(e)}"
            continue
        n_resized += resized
        if arr.ndim == 3:
            if stack.shape[-1] == 1:
                rgb = np.zeros((len(paths), h, w, 3), dtype=np.uint8)
                rgb[:i] = stack[:i]  # broadcasts the grey channel into R, G and B
                stack = rgb
            stack[i] = arr
            grey[i] = False
        else:
            stack[i] = arr[:, :, None]
    return stack, grey, n_resized


def _open(data: bytes) -> Image.Image:
    """Open an image lazily (header only); PIL's own size warning is ours to give."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data), formats=_PIL_FORMATS)
    except Image.DecompressionBombError as e:
        raise _BadImage(f"decompression bomb refused by PIL ({one_line(e)})") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise _BadImage(f"not a readable PNG/JPEG/BMP/WebP image ({type(e).__name__})") from e


def _read_header(data: bytes, limits: LoadLimits) -> _Header:
    """Size and colour capacity of one image from its header, checked against the pixel limit."""
    im = _open(data)
    width, height = im.size
    if width * height > limits.max_image_pixels:
        raise _BadImage(
            f"{width}x{height} = {width * height} pixels, over LoadLimits.max_image_pixels "
            f"({limits.max_image_pixels}); not decoded (possible decompression bomb)"
        )
    if "exif" in im.info:  # only where the EXIF block came with the header (PNG may load to find it)
        try:
            if im.getexif().get(_ORIENTATION) in (5, 6, 7, 8):
                width, height = height, width
        except (OSError, SyntaxError, ValueError, TypeError):
            pass  # unreadable EXIF: the decode pass tells whether the image itself is readable
    colour = not (im.mode in _GREY_MODES or im.mode.startswith("I;"))
    return _Header(height=height, width=width, colour=colour)


def _decode_one(data: bytes, size: tuple[int, int]) -> tuple[np.ndarray, bool]:
    """Decode one image, upright, resized to ``size`` = ``(H, W)``, as grey ``(H, W)`` or RGB ``(H, W, 3)``.

    Returns:
        The array and whether it was resized.
    """
    th, tw = size
    im = _open(data)
    try:
        if im.format == "JPEG" and min(im.size) >= 2 * max(th, tw):
            im.draft(None, (max(th, tw), max(th, tw)))  # decode at 1/2..1/8 scale: less memory
        ImageOps.exif_transpose(im, in_place=True)  # not a copy: a 48 MP photo is 200 MB decoded
        im = _eight_bit(im)
        resized = im.size != (tw, th)
        if resized:
            im = im.resize((tw, th), _RESIZE, reducing_gap=_REDUCING_GAP)
        if im.mode in ("LA", "RGBA"):
            im = _on_white(im)
        arr = np.asarray(im)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise _BadImage(f"corrupt or truncated image data ({one_line(e)})") from e
    if arr.ndim == 3 and (arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all():
        arr = np.ascontiguousarray(arr[..., 0])  # stored as RGB but grey (WebP, many JPEGs)
    return arr, resized


def _eight_bit(im: Image.Image) -> Image.Image:
    """Any mode as ``L``, ``LA``, ``RGB`` or ``RGBA`` (alpha kept for resizing, then composited)."""
    mode = im.mode
    if mode in ("L", "LA", "RGB", "RGBA"):
        return im  # already one of ours: converting would copy it
    if mode == "1":
        return im.convert("L")
    if mode == "La":
        return im.convert("LA")
    if mode.startswith("I") or mode == "F":
        arr = np.asarray(im).astype(np.float32)
        if mode.startswith("I;16") or arr.max(initial=0) > 255:
            arr /= 257.0
        np.clip(np.round(arr, out=arr), 0, 255, out=arr)
        return Image.fromarray(arr.astype(np.uint8))
    if mode in ("RGBa", "PA") or (mode == "P" and "transparency" in im.info):
        return im.convert("RGBA")
    return im.convert("RGB")


def _on_white(im: Image.Image) -> Image.Image:
    """Composite an ``LA`` or ``RGBA`` image over a white background, dropping alpha."""
    rgba = im.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    out = Image.alpha_composite(background, rgba)
    return out.convert("L" if im.mode == "LA" else "RGB")


def _shown(path: str) -> str:
    """A member path for a message: control characters escaped, so a name cannot break the line."""
    return repr(path)[1:-1]


def _reason(error: Exception) -> str:
    """Why one image failed, without repeating the archive name and path."""
    if isinstance(error, ArchiveError) and error.__cause__ is not None:
        return f"corrupt in the archive ({one_line(error.__cause__)})"
    return one_line(error)
