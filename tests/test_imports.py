"""`core` is importable without Streamlit (the UI depends on core, never the reverse)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import core


def test_core_never_imports_streamlit():
    modules = [m.name for m in pkgutil.walk_packages(core.__path__, "core.")]
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        "bad = [m for m in sys.modules if m == 'streamlit' or m.startswith('streamlit.')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(core.__file__).parent.parent)


def test_core_has_no_print_calls():
    """Engine code logs; only the command line writes to stdout."""
    for path in Path(core.__file__).parent.rglob("*.py"):
        if path.name == "cli.py":
            continue
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            assert not line.lstrip().startswith("print("), f"{path}:{lineno} prints; use logging"
