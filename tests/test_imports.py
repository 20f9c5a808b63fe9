"""What importing `core` costs: never Streamlit, and each entry point only the heavy packages it uses.

The engine's packages (torch, cvxpy, sklearn, cleanlab...) take seconds to import; a
command that does not use them (``hostcp --help``, ``hostcp inspect``) must not pay
for them. Each check runs in a fresh interpreter and reads ``sys.modules``.
"""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

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


# --- what each entry point imports ------------------------------------------------------------------

#: The engine's heavy packages: seconds to import each (torch alone about 3 s on the 2-core CI machine).
ENGINE = ("torch", "torchvision", "cvxpy", "cvxpylayers", "diffcp", "moreau", "sklearn", "cleanlab", "umap")


def _imported(code: str, *, cwd: Path | None = None) -> set[str]:
    """Top-level packages in ``sys.modules`` after running ``code`` in a fresh interpreter."""
    probe = (
        f"{code}\n"
        "import sys\n"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          cwd=cwd or Path(core.__file__).parent.parent, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return set(proc.stdout.split("\n")[-2].split())


def test_help_imports_no_engine_and_no_pandas():
    code = (
        "import contextlib, io\n"
        "from core.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main(['--help'])\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main(['select', '--help'])\n"
    )
    loaded = _imported(code)
    assert "core" in loaded  # the probe ran the command line
    assert not loaded & {*ENGINE, "pandas", "PIL"}, sorted(loaded & {*ENGINE, "pandas", "PIL"})


def test_inspect_of_a_csv_imports_no_engine(tmp_path):
    rng = np.random.default_rng(0)
    rows = ["a,b,c,label"] + [f"{r[0]:.3f},{r[1]:.3f},{r[2]:.3f},{'xy'[i % 2]}"
                              for i, r in enumerate(rng.normal(size=(60, 3)))]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    code = (
        "import contextlib, io\n"
        "from core.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        f"    assert main(['inspect', {str(tmp_path / 't.csv')!r}]) == 0\n"
        "assert '60' in out.getvalue(), out.getvalue()\n"
    )
    loaded = _imported(code)
    assert not loaded & set(ENGINE), sorted(loaded & set(ENGINE))


@pytest.mark.parametrize(
    ("code", "allowed"),
    [
        # listing the methods (the CLI's check, the Select page) builds none of them
        ("from core.valuation import available_methods; assert 'hostcp' in available_methods()", ()),
        # a baseline that needs neither torch nor cvxpy loads only its own module
        ("from core.valuation import get_method; get_method('random')", ()),
        ("import core.mislabel, core.data, core.store, core.evaluate, core.pipeline, core.cli", ()),
        ("from core.valuation import get_method; get_method('hostcp')",
         ("torch", "cvxpy", "cvxpylayers", "diffcp", "moreau")),
    ],
    ids=["list-methods", "random", "engine-modules", "hostcp"],
)
def test_modules_import_only_what_they_use(code, allowed):
    loaded = _imported(code)
    unexpected = loaded & set(ENGINE) - set(allowed)
    assert not unexpected, sorted(unexpected)


def test_hostcp_loads_its_solver_stack():
    """The allow-lists above are not vacuous: building HOST-CP does import torch and cvxpy."""
    assert {"torch", "cvxpy"} <= _imported("from core.valuation import get_method; get_method('hostcp')")


def test_the_method_list_matches_what_the_modules_register():
    """Built-in methods are listed without importing them; each module registers the same name and label."""
    from core.valuation import base

    for name, (module, label) in base.BUILTIN_METHODS.items():
        importlib.import_module(f"core.valuation.{module}")
        cls, registered_label = base._REGISTRY[name]
        assert (cls.name, registered_label) == (name, label)
    assert list(base.available_methods())[: len(base.BUILTIN_METHODS)] == list(base.BUILTIN_METHODS)


def test_a_hostcp_run_never_imports_torchs_compiler():
    """moreau's ``@torch.compiler.disable`` imported ``torch._dynamo`` (1.5-4 s) at cvxpy's import."""
    code = (
        "import numpy as np\n"
        "from core.valuation import SelectionTask, get_method\n"
        "rng = np.random.default_rng(0)\n"
        "x, y = rng.normal(size=(120, 6)).astype('float32'), rng.integers(0, 3, 120)\n"
        "task = SelectionTask(x, y, x[:30], y[:30], n_classes=3, budget=0.1, seed=0)\n"
        "assert get_method('hostcp', solver='moreau').fit(task).result.selected.sum() == 12\n"
        "import sys, torch\n"
        "assert 'moreau' in sys.modules and 'cvxpy' in sys.modules\n"
        "assert 'torch._dynamo' not in sys.modules, 'torch._dynamo imported'\n"
        "assert torch.compiler.disable.__module__.startswith('torch'), 'patch left in place'\n"
    )
    root = Path(core.__file__).parent.parent
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root, timeout=300)
