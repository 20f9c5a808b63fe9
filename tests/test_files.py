"""Atomic writes: temporaries out of the way, stale ones of killed writers removed, umask honoured."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import core.files as files_mod
from core.files import TEMP_FOLDER, atomic_write, clean_stale_temporaries, default_file_mode

ROOT = Path(__file__).resolve().parents[1]
posix_only = pytest.mark.skipif(os.name != "posix", reason="stale temporaries are judged by PID on POSIX")

#: A child that starts an atomic write, says so, and then hangs inside the writer until killed.
_HANGING_WRITER = textwrap.dedent("""
    import sys, time
    from core.files import atomic_write

    def writer(fh):
        fh.write(b"x" * 100_000)
        fh.flush()
        print("writing", flush=True)
        time.sleep(120)

    atomic_write(sys.argv[1], writer)
""")


def _start_hanging_writer(target: Path) -> subprocess.Popen:
    child = subprocess.Popen([sys.executable, "-c", _HANGING_WRITER, str(target)], cwd=ROOT,
                             stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert child.stdout.readline().strip() == "writing"
    return child


def _kill(child: subprocess.Popen) -> None:
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)  # reaped: its PID no longer exists
    child.stdout.close()


def _dead_pid() -> int:
    """The PID of a process that has exited and been reaped."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _temporaries(folder: Path) -> list[str]:
    tmp = folder / TEMP_FOLDER
    return sorted(p.name for p in tmp.iterdir()) if tmp.exists() else []


@pytest.fixture()
def umask():
    """Set the process umask for one test (single-threaded here), restoring it afterwards."""
    old = os.umask(0o022)
    try:
        yield os.umask
    finally:
        os.umask(old)


def test_write_replaces_and_leaves_only_the_file(tmp_path):
    target = tmp_path / "out" / "a.bin"
    target.parent.mkdir()
    target.write_bytes(b"old")
    atomic_write(target, lambda fh: fh.write(b"new"))
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.bin"]  # no temporary, no folder


def test_failed_write_keeps_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")

    def boom(fh):
        fh.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, boom)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]


@posix_only
def test_killed_writer_is_cleaned_up_by_the_next_write(tmp_path):
    target = tmp_path / "big.csv"
    child = _start_hanging_writer(target)
    try:
        left = _temporaries(tmp_path)
        assert len(left) == 1 and left[0].startswith("big.csv.") and f"-{child.pid}." in left[0]
        assert [p.name for p in tmp_path.iterdir()] == [TEMP_FOLDER]  # only the hidden folder
    finally:
        _kill(child)
    assert _temporaries(tmp_path) == left  # a killed writer cannot tidy up
    atomic_write(tmp_path / "other.csv", lambda fh: fh.write(b"ok"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.csv"]  # stale temporary gone


@posix_only
def test_a_live_writers_temporary_is_never_removed(tmp_path):
    child = _start_hanging_writer(tmp_path / "slow.zip")
    try:
        live = _temporaries(tmp_path)
        atomic_write(tmp_path / "fast.zip", lambda fh: fh.write(b"ok"))
        assert clean_stale_temporaries(tmp_path) == 0
        assert _temporaries(tmp_path) == live  # still being written
    finally:
        _kill(child)
    assert clean_stale_temporaries(tmp_path) == 1 and not (tmp_path / TEMP_FOLDER).exists()


@posix_only
def test_files_that_are_not_ours_are_left_alone(tmp_path):
    tmp = tmp_path / TEMP_FOLDER
    tmp.mkdir()
    dead = _dead_pid()
    host = files_mod._HOST
    keep = [
        "notes.txt",  # not a temporary's name
        f"a.csv.otherhost-{dead}.abcd1234.part",  # another host's PID means nothing here
        f"a.csv.{host}-{dead}.ABCD.part",  # not a name mkstemp makes
        f"a.csv.{host}-{os.getpid()}.abcd1234.part",  # this process: a write in another thread
    ]
    for name in keep:
        (tmp / name).write_bytes(b"x")
    (tmp / f"d.{host}-{dead}.abcd1234.part").mkdir()  # a folder, not a file
    (tmp / f"l.{host}-{dead}.abcd1234.part").symlink_to(tmp_path / "elsewhere")
    (tmp / f"stale.bin.{host}-{dead}.abcd1234.part").write_bytes(b"x")
    legacy = tmp_path / ".a.csv.k2j3h4g5.part"  # beside the target: not ours to judge
    legacy.write_bytes(b"x")
    atomic_write(tmp_path / "a.csv", lambda fh: fh.write(b"ok"))
    assert _temporaries(tmp_path) == sorted([*keep, f"d.{host}-{dead}.abcd1234.part",
                                             f"l.{host}-{dead}.abcd1234.part"])
    assert legacy.exists()


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_written_files_honour_the_umask(tmp_path, umask, mask, mode):
    umask(mask)
    new = atomic_write(tmp_path / "new.csv", lambda fh: fh.write(b"a"))
    old = tmp_path / "old.csv"
    old.write_bytes(b"x")
    old.chmod(0o600)  # e.g. written by an earlier version
    atomic_write(old, lambda fh: fh.write(b"b"))
    assert oct(new.stat().st_mode & 0o777) == oct(mode)
    assert oct(old.stat().st_mode & 0o777) == oct(mode)
    assert default_file_mode() == mode


def test_umask_falls_back_to_the_one_read_at_import(monkeypatch):
    monkeypatch.setattr(files_mod, "_read_umask", lambda: None)
    monkeypatch.setattr(files_mod, "_IMPORT_UMASK", 0o077)
    assert default_file_mode() == 0o600


def test_missing_folders_are_created(tmp_path):
    target = atomic_write(tmp_path / "a" / "b" / "c.txt", lambda fh: fh.write(b"x"))
    assert target.read_bytes() == b"x" and sorted(p.name for p in target.parent.iterdir()) == ["c.txt"]


@pytest.mark.parametrize(
    ("name", "writer"),
    [
        ("x.csv.host-12.abcd_123.part", ("host", 12)),
        ("a.b-c.csv.my-host-7.zz99.part", ("my-host", 7)),
        ("x.csv.host-12.abcd.tmp", None),
        ("x.csv.host12.abcd.part", None),
        ("x.csv.host-1a.abcd.part", None),
        (".part", None),
    ],
)
def test_temporary_names_are_parsed_strictly(name, writer):
    assert files_mod._writer_of(name) == writer


def test_concurrent_writers_in_one_folder_all_succeed(tmp_path):
    """Writers share the temporary folder, which each removes when empty: none may trip on that."""
    from concurrent.futures import ThreadPoolExecutor

    def write(i: int) -> Path:
        return atomic_write(tmp_path / f"f{i % 10}.bin", lambda fh: fh.write(str(i).encode()))

    with ThreadPoolExecutor(8) as pool:
        written = list(pool.map(write, range(400)))
    assert len(written) == 400
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"f{i}.bin" for i in range(10))
