"""Safe in-memory reading of ZIP uploads: size and ratio limits, hostile paths, class folders.

Nothing is ever extracted to disk. The ZIP central directory is checked
(member count, declared sizes, compression ratio, paths, encryption) before
any member is decompressed; images are then decoded within the pixel limits by
:mod:`core.data.images`.
"""

from __future__ import annotations

import io
import logging
import posixpath
import re
import stat
import zipfile
import zlib
from collections.abc import Iterable

import numpy as np

from core.data.dataset import Dataset
from core.data.images import decode_images
from core.data.limits import LoadLimits, listing, one_line
from core.errors import ArchiveError, DataError

__all__ = [
    "IMAGE_EXTENSIONS",
    "LoadLimits",
    "SafeArchive",
    "check_upload_size",
    "decode_images",
    "load_image_folder_zip",
    "normalize_member",
    "open_archive",
]

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
# Image formats we recognise but do not read: named in the error so the user can convert them.
_OTHER_IMAGE_EXTENSIONS = (".gif", ".tif", ".tiff", ".heic", ".heif", ".svg", ".ico", ".jp2")
_JUNK = re.compile(r"(^|/)(__MACOSX/|\.[^/]*(/|$)|Thumbs\.db$|desktop\.ini$)", re.IGNORECASE)
_SUPPORTED_COMPRESSION = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
_RATIO_MIN_BYTES = 1 << 20  # members smaller than this skip the per-member ratio check


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
            raise ArchiveError(f"{self.where}: member {path!r} is corrupt ({one_line(e)}).") from e


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
            f"{where} is not a valid ZIP archive ({one_line(e)}). Re-create it with a standard zip tool "
            "(for example `zip -r data.zip data/`) and load it again."
        ) from e
    if len(infos) > limits.max_files:
        raise ArchiveError(
            f"{where} has {len(infos)} members, over the limit of {limits.max_files}. "
            "Split the archive or raise LoadLimits.max_files."
        )
    escaping = [i.filename for i in infos if normalize_member(i.filename) is None]
    if escaping:
        raise ArchiveError(
            f"{where} has member paths that escape the archive: {listing(escaping)}. "
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
            f"{limits.max_ratio:.0f}x for {listing(bombs)}. Nothing was extracted. If the data "
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
            raise ArchiveError(f"{where} has {what}: {listing(found)}. Fix: {fix}.")
    return SafeArchive(zf, files, where)


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
            f"{archive_name} has images in formats that are not supported: {listing(unsupported)}. "
            f"Convert them to one of {', '.join(IMAGE_EXTENSIONS)}."
        )
    if not paths:
        what = f"only {listing(skipped)}" if skipped else "no files at all"
        raise ArchiveError(
            f"{archive_name} contains no images ({what}). Expected class folders of "
            f"{'/'.join(IMAGE_EXTENSIONS)} files, e.g. cat/001.png and dog/002.jpg."
        )
    parts = [p.split("/") for p in paths]
    depth = 0
    tops = {p[0] for p in parts}
    if len(tops) == 1 and all(len(p) >= 3 for p in parts):
        depth = 1  # everything sits under one top folder: classes are one level down
    loose = [p for p, ps in zip(paths, parts, strict=True) if len(ps) < depth + 2]
    if loose:
        raise ArchiveError(
            f"{archive_name} has images outside class folders: {listing(loose)}. Put every image "
            "in a folder named after its class (cat/001.png, dog/002.png), optionally all under "
            "one top folder."
        )
    folder = [ps[depth] for ps in parts]
    class_names = tuple(sorted(set(folder)))
    if len(class_names) < limits.min_classes:
        raise DataError(
            f"{archive_name} has a single class folder ({class_names[0]!r}). Selection and "
            "mislabel detection need at least two classes: add a folder per class."
        )
    images, note = decode_images(archive, paths, limits=limits, image_size=image_size)
    if skipped:  # recorded in the origin too; not a warning, so an error stays the only line
        logger.info("%s: ignored %d non-image files: %s", archive_name, len(skipped), skipped[:5])
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


def _mib(n_bytes: int) -> str:
    """Human-readable size."""
    return f"{n_bytes / (1 << 20):.1f} MiB"
