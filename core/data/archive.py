"""Safe in-memory reading of ZIP uploads: limits, hostile paths, image decoding, class folders.

Nothing is ever extracted to disk. The ZIP central directory is checked
(member count, declared sizes, compression ratio, paths, encryption) before
any member is decompressed, and every image header is checked against a
pixel limit before the image is decoded.
"""

from __future__ import annotations

import io
import logging
import posixpath
import re
import stat
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from core.data.dataset import Dataset
from core.errors import ArchiveError, ConfigError, DataError

__all__ = [
    "IMAGE_EXTENSIONS",
    "LoadLimits",
    "SafeArchive",
    "decode_images",
    "load_image_folder_zip",
    "normalize_member",
    "open_archive",
]

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
_PIL_FORMATS = ("PNG", "JPEG", "BMP", "WEBP")
# Image formats we recognise but do not read: named in the error so the user can convert them.
_OTHER_IMAGE_EXTENSIONS = (".gif", ".tif", ".tiff", ".heic", ".heif", ".svg", ".ico", ".jp2")
_JUNK = re.compile(r"(^|/)(__MACOSX/|\.[^/]*(/|$)|Thumbs\.db$|desktop\.ini$)", re.IGNORECASE)
_SUPPORTED_COMPRESSION = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
_RATIO_MIN_BYTES = 1 << 20  # members smaller than this skip the per-member ratio check
_SHOW = 10  # how many offending paths an error message lists


@dataclass(frozen=True)
class LoadLimits:
    """Upper bounds on what a load may read; each exists to stop a hostile or mistaken input.

    Attributes:
        max_upload_bytes: Largest input file (CSV, Parquet, NPZ or ZIP) accepted.
        max_uncompressed_bytes: Largest total of a ZIP's declared member sizes.
        max_ratio: Largest compression ratio (uncompressed / compressed) of a ZIP
            or of any member over 1 MiB; zip bombs have ratios in the thousands.
        max_image_pixels: Largest width x height of one image, checked from its header.
        max_total_pixels: Largest total of pixel values (N x H x W x C) held in memory.
        max_files: Largest number of members in a ZIP.
    """

    max_upload_bytes: int = 2 << 30  # 2 GiB: far above Streamlit's 200 MB default upload cap
    max_uncompressed_bytes: int = 8 << 30  # 8 GiB of declared content
    max_ratio: float = 200.0  # PNG/JPEG barely compress; plain BMPs rarely pass 50
    max_image_pixels: int = 50_000_000  # ~7000 x 7000; below PIL's own 89 M warning
    max_total_pixels: int = 1_500_000_000  # ~1.5 GB of uint8 decoded images
    max_files: int = 500_000  # members (files and folders) in one ZIP

    def __post_init__(self) -> None:
        for field_name in (
            "max_upload_bytes",
            "max_uncompressed_bytes",
            "max_image_pixels",
            "max_total_pixels",
            "max_files",
        ):
            value = getattr(self, field_name)
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"LoadLimits.{field_name} must be a positive int; got {value!r}.")
        if not self.max_ratio > 1:
            raise ConfigError(f"LoadLimits.max_ratio must be > 1; got {self.max_ratio!r}.")


def check_upload_size(n_bytes: int, *, where: str, limits: LoadLimits) -> None:
    """Raise :class:`ArchiveError` when an input is larger than ``limits.max_upload_bytes``."""
    if n_bytes > limits.max_upload_bytes:
        raise ArchiveError(
            f"{where} is {_mib(n_bytes)}, over the upload limit of {_mib(limits.max_upload_bytes)}. "
            "Upload a smaller file (fewer or smaller images) or raise LoadLimits.max_upload_bytes."
        )


def normalize_member(name: str) -> str | None:
    """Return a ZIP member name as a clean relative POSIX path, or ``None`` if it escapes.

    Backslashes count as separators and ``./`` parts are dropped; absolute
    paths, drive letters and any ``..`` part make the name unsafe.
    """
    path = name.replace("\\", "/")
    if path.startswith("/") or re.match(r"^[A-Za-z]:", path) or "\x00" in path:
        return None
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        return None
    return "/".join(parts)


class SafeArchive:
    """A ZIP whose directory passed every check; members are read from memory by clean path.

    Attributes:
        where: Name of the archive used in messages.
        files: Clean member path -> ``ZipInfo`` for every regular file (no folders).
    """

    def __init__(self, zf: zipfile.ZipFile, files: dict[str, zipfile.ZipInfo], where: str) -> None:
        self._zf = zf
        self.files = files
        self.where = where

    def read(self, path: str) -> bytes:
        """Decompress one member (bounded by its checked, declared size).

        Raises:
            ArchiveError: The member's data is corrupt (bad CRC, truncated stream).
        """
        info = self.files[path]
        try:
            with self._zf.open(info) as fh:
                return fh.read(info.file_size + 1)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as e:
            raise ArchiveError(f"{self.where}: member {path!r} is corrupt ({e}).") from e


def open_archive(data: bytes, *, where: str, limits: LoadLimits) -> SafeArchive:
    """Open ZIP bytes and check its directory before anything is decompressed.

    Args:
        data: The whole ZIP file.
        where: Name of the archive for messages (the uploaded file name).
        limits: Size, ratio and count limits.

    Raises:
        ArchiveError: Not a ZIP, too large, too many members, a bomb, hostile or
            duplicate paths, encrypted or symlinked members, unsupported compression.
    """
    check_upload_size(len(data), where=where, limits=limits)
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError) as e:
        raise ArchiveError(
            f"{where} is not a valid ZIP archive ({e}). Re-create it with a standard zip tool "
            "(for example `zip -r data.zip data/`) and upload it again."
        ) from e
    if len(infos) > limits.max_files:
        raise ArchiveError(
            f"{where} has {len(infos)} members, over the limit of {limits.max_files}. "
            "Split the archive or raise LoadLimits.max_files."
        )
    escaping = [i.filename for i in infos if normalize_member(i.filename) is None]
    if escaping:
        raise ArchiveError(
            f"{where} has member paths that escape the archive: {_listing(escaping)}. "
            "Paths must be relative and stay inside the archive (no '..', no leading '/', "
            "no drive letters); re-create the ZIP from inside the data folder."
        )
    total = sum(i.file_size for i in infos)
    if total > limits.max_uncompressed_bytes:
        raise ArchiveError(
            f"{where} would expand to {_mib(total)}, over the limit of "
            f"{_mib(limits.max_uncompressed_bytes)} (read from the ZIP directory, nothing was "
            "extracted). Upload fewer or smaller files or raise LoadLimits.max_uncompressed_bytes."
        )
    compressed = max(1, sum(i.compress_size for i in infos))
    bombs = [
        f"{i.filename} ({i.file_size / max(1, i.compress_size):.0f}x)"
        for i in infos
        if i.file_size > _RATIO_MIN_BYTES and i.file_size / max(1, i.compress_size) > limits.max_ratio
    ]
    if total > _RATIO_MIN_BYTES and total / compressed > limits.max_ratio:
        bombs.insert(0, f"the whole archive ({total / compressed:.0f}x)")
    if bombs:
        raise ArchiveError(
            f"{where} looks like a decompression bomb: compression ratio over "
            f"{limits.max_ratio:.0f}x for {_listing(bombs)}. Nothing was extracted. If the data "
            "is genuine, raise LoadLimits.max_ratio."
        )
    files: dict[str, zipfile.ZipInfo] = {}
    duplicates, encrypted, links, methods = [], [], [], []
    for info in infos:
        path = normalize_member(info.filename)
        if info.is_dir() or not path:
            continue
        if path in files:
            duplicates.append(path)
        if info.flag_bits & 0x1:
            encrypted.append(path)
        if stat.S_ISLNK(info.external_attr >> 16):
            links.append(path)
        if info.compress_type not in _SUPPORTED_COMPRESSION:
            methods.append(f"{path} (method {info.compress_type})")
        files[path] = info
    for found, what, fix in (
        (duplicates, "duplicate member paths", "each file must appear once; re-create the ZIP"),
        (encrypted, "password-protected members", "upload an archive without a password"),
        (links, "symbolic links", "replace links with the files they point to"),
        (methods, "an unsupported compression method", "re-zip with standard Deflate"),
    ):
        if found:
            raise ArchiveError(f"{where} has {what}: {_listing(found)}. Fix: {fix}.")
    return SafeArchive(zf, files, where)


def decode_images(
    archive: SafeArchive,
    paths: Sequence[str],
    *,
    limits: LoadLimits,
    image_size: int | tuple[int, int] | None = None,
) -> tuple[np.ndarray, str]:
    """Decode images from an archive into one ``(N, H, W, C)`` uint8 stack.

    If any image is colour every image is converted to RGB (C=3), else C=1.
    Images of other sizes are resized to ``image_size`` (``(H, W)`` or a side
    for squares) or, when it is ``None``, to the most common size.

    Returns:
        The image stack and a short note on conversions (for provenance).

    Raises:
        ArchiveError: Listing every image that could not be read, with its path.
    """
    target = _parse_size(image_size)
    arrays: list[np.ndarray | None] = []
    problems: list[str] = []
    total = 0
    for path in paths:
        try:
            arr = _decode_one(archive.read(path), limits=limits)
        except (ArchiveError, _BadImage) as e:
            problems.append(f"{path}: {e}")
            arrays.append(None)
            continue
        total += arr.size
        if total > limits.max_total_pixels:
            raise ArchiveError(
                f"{archive.where}: the images hold more than {limits.max_total_pixels} pixel values "
                f"in total (reached at {path!r}). Downscale the images, upload fewer, or raise "
                "LoadLimits.max_total_pixels."
            )
        arrays.append(arr)
    if problems:
        raise ArchiveError(
            f"{archive.where}: {len(problems)} of {len(paths)} images could not be read:\n  "
            + "\n  ".join(problems)
            + "\nFix or remove these files and upload again (nothing was dropped silently)."
        )
    colour = any(a.ndim == 3 for a in arrays)
    sizes = Counter(a.shape[:2] for a in arrays)
    if target is None:
        target = max(sizes.items(), key=lambda kv: (kv[1], kv[0]))[0]
    h, w = target
    c = 3 if colour else 1
    if len(arrays) * h * w * c > limits.max_total_pixels:
        raise ArchiveError(
            f"{archive.where}: {len(arrays)} images of {h}x{w}x{c} exceed LoadLimits.max_total_pixels "
            f"({limits.max_total_pixels}). Choose a smaller image_size or upload fewer images."
        )
    out = np.empty((len(arrays), h, w, c), dtype=np.uint8)
    n_resized = 0
    for i, arr in enumerate(arrays):
        if colour and arr.ndim == 2:
            arr = np.repeat(arr[:, :, None], 3, axis=2)
        if arr.shape[:2] != (h, w):
            resample = Image.Resampling.BILINEAR
            arr = np.asarray(Image.fromarray(arr).resize((w, h), resample))
            n_resized += 1
        out[i] = arr.reshape(h, w, c)
    notes = [f"{h}x{w}x{c}"]
    if colour and any(a.ndim == 2 for a in arrays if a is not None):
        notes.append("grey images converted to RGB")
    if n_resized:
        notes.append(f"{n_resized} resized from other sizes")
    return out, ", ".join(notes)


def load_image_folder_zip(
    data: bytes,
    *,
    archive_name: str,
    name: str,
    limits: LoadLimits,
    image_size: int | tuple[int, int] | None = None,
) -> Dataset:
    """Load a ZIP of class folders (``cat/001.png``, optionally under one top folder).

    Ids and sources are the paths inside the archive; class names are the
    folder names, sorted.

    Raises:
        ArchiveError: Any archive or image problem (see :func:`open_archive`).
        DataError: No images, images outside class folders, or a single class.
    """
    archive = open_archive(data, where=archive_name, limits=limits)
    paths, skipped, unsupported = _classify(archive.files)
    if unsupported:
        raise ArchiveError(
            f"{archive_name} has images in formats that are not supported: {_listing(unsupported)}. "
            f"Convert them to one of {', '.join(IMAGE_EXTENSIONS)}."
        )
    if not paths:
        what = f"only {_listing(skipped)}" if skipped else "no files at all"
        raise ArchiveError(
            f"{archive_name} contains no images ({what}). Expected class folders of "
            f"{'/'.join(IMAGE_EXTENSIONS)} files, e.g. cat/001.png and dog/002.jpg."
        )
    if skipped:
        logger.warning("%s: ignored %d non-image files: %s", archive_name, len(skipped), skipped[:5])
    parts = [p.split("/") for p in paths]
    depth = 0
    tops = {p[0] for p in parts}
    if len(tops) == 1 and all(len(p) >= 3 for p in parts):
        depth = 1  # everything sits under one top folder: classes are one level down
    loose = [p for p, ps in zip(paths, parts, strict=True) if len(ps) < depth + 2]
    if loose:
        raise ArchiveError(
            f"{archive_name} has images outside class folders: {_listing(loose)}. Put every image "
            "in a folder named after its class (cat/001.png, dog/002.png), optionally all under "
            "one top folder."
        )
    folder = [ps[depth] for ps in parts]
    class_names = tuple(sorted(set(folder)))
    if len(class_names) < 2:
        raise DataError(
            f"{archive_name} has a single class folder ({class_names[0]!r}). Selection and "
            "mislabel detection need at least two classes: add a folder per class."
        )
    images, note = decode_images(archive, paths, limits=limits, image_size=image_size)
    index = {c: i for i, c in enumerate(class_names)}
    ids = np.array(paths, dtype=str)
    extra = f", ignored {len(skipped)} non-image files" if skipped else ""
    return Dataset(
        name=name,
        ids=ids,
        labels=np.array([index[f] for f in folder], dtype=np.int64),
        class_names=class_names,
        images=images,
        sources=ids.copy(),
        origin=f"zip:{archive_name} (class folders; {len(paths)} images, {note}{extra})",
    )


class _BadImage(Exception):
    """One image could not be decoded (collected, then reported together)."""


def _decode_one(data: bytes, *, limits: LoadLimits) -> np.ndarray:
    """Decode one image to ``(H, W)`` grey or ``(H, W, 3)`` RGB uint8, checking its header first."""
    try:
        im = Image.open(io.BytesIO(data), formats=_PIL_FORMATS)
    except Image.DecompressionBombError as e:
        raise _BadImage(f"decompression bomb refused by PIL ({e})") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise _BadImage(f"not a readable PNG/JPEG/BMP/WebP image ({type(e).__name__})") from e
    width, height = im.size
    if width * height > limits.max_image_pixels:
        raise _BadImage(
            f"{width}x{height} = {width * height} pixels, over LoadLimits.max_image_pixels "
            f"({limits.max_image_pixels}); not decoded (possible decompression bomb)"
        )
    try:
        im = ImageOps.exif_transpose(im)
        return _to_array(im)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise _BadImage(f"corrupt or truncated image data ({e})") from e


def _to_array(im: Image.Image) -> np.ndarray:
    """Convert a PIL image of any mode to grey ``(H, W)`` or RGB ``(H, W, 3)`` uint8.

    An RGB image whose three channels are equal counts as grey.
    """
    mode = im.mode
    if mode in ("1", "L"):
        return np.asarray(im.convert("L"))
    if mode in ("LA", "La"):
        return np.asarray(_on_white(im.convert("LA")).convert("L"))
    if mode.startswith("I") or mode == "F":
        arr = np.asarray(im).astype(np.float64)
        if mode.startswith("I;16") or arr.max(initial=0) > 255:
            arr = arr / 257.0
        return np.clip(np.round(arr), 0, 255).astype(np.uint8)
    if mode in ("RGBA", "RGBa", "PA") or (mode == "P" and "transparency" in im.info):
        rgb = np.asarray(_on_white(im.convert("RGBA")).convert("RGB"))
    else:
        rgb = np.asarray(im.convert("RGB"))
    if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
        return np.ascontiguousarray(rgb[..., 0])  # stored as RGB but grey (WebP, many JPEGs)
    return rgb


def _on_white(im: Image.Image) -> Image.Image:
    """Composite an image with alpha over a white background."""
    rgba = im.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba)


def _classify(files: Iterable[str]) -> tuple[list[str], list[str], list[str]]:
    """Split member paths into (images, skipped non-image files, unsupported image formats)."""
    images, skipped, unsupported = [], [], []
    for path in sorted(files):
        if _JUNK.search(path):
            continue
        ext = posixpath.splitext(path)[1].lower()
        if ext in IMAGE_EXTENSIONS:
            images.append(path)
        elif ext in _OTHER_IMAGE_EXTENSIONS:
            unsupported.append(path)
        else:
            skipped.append(path)
    return images, skipped, unsupported


def _parse_size(image_size: int | tuple[int, int] | None) -> tuple[int, int] | None:
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


def _listing(items: Sequence[str]) -> str:
    """Quote the first few items of a list and say how many more there are."""
    shown = ", ".join(repr(i) for i in items[:_SHOW])
    more = len(items) - _SHOW
    return shown + (f" and {more} more" if more > 0 else "")


def _mib(n_bytes: int) -> str:
    """Human-readable size."""
    return f"{n_bytes / (1 << 20):.1f} MiB"
