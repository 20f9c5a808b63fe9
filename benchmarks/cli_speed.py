"""End-to-end time of ``hostcp select`` with default settings, as a user runs it, and where it goes.

Usage::

    .venv/bin/python benchmarks/cli_speed.py              # 1,000 and 20,000 points of 64-d features
    .venv/bin/python benchmarks/cli_speed.py --sizes 200 --repeats 3
    .venv/bin/python benchmarks/cli_speed.py --sizes 200 --profile   # seconds by part
    .venv/bin/python benchmarks/cli_speed.py --sizes 200 --repeats 5 --compare /path/to/old/checkout

Each size writes a CSV of a 10-class Gaussian mixture (64 numeric features, 10
percent of labels flipped), then times the whole command in a fresh process:
loading, embedding (standardise), mislabel detection, HOST-CP and writing
``selection.csv``. Targets: 200 points in at most 5 s (issue 10), 1,000 under
10 s; 20,000 under 10 minutes.

``--profile`` runs the same command once more per size in a fresh process with
timers around its parts (exclusive seconds: a part's time minus the parts it
calls). Imports are timed by the package being imported (``import torch``...),
wherever they happen; the job runs inline in the main thread so that its parts
can be timed, with the same progress and cancellation checks it has in a job.
The timers add a few percent; compare parts within one run, not across runs.
``--compare DIR`` times the same command on the ``core/`` of another checkout
(``PYTHONPATH=DIR``), interleaved run by run with this one, so that a before /
after comparison sees the same machine load.
This module imports nothing heavy at the top, so the profiled child starts as
bare as the real command.
"""

from __future__ import annotations

import argparse
import builtins
import collections
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HOSTCP = str(Path(sys.executable).with_name("hostcp"))

#: Functions timed by ``--profile``: (label, module, attribute path). Missing ones are skipped,
#: so the profile keeps working while the engine's insides move.
TIMED = (
    ("load input", "core.cli", "load_input"),
    ("store: open + schema", "core.store.database", "Store.__init__"),
    ("store: add dataset", "core.store.database", "Store.add_dataset"),
    ("store: read dataset", "core.store.database", "Store.get_dataset"),
    ("store: labels + decisions", "core.store.review_log", "ReviewLogMixin.effective_labels"),
    ("store: mislabel rows", "core.store.results", "ResultsMixin.add_mislabel_result"),
    ("store: mislabel rows", "core.store.results", "ResultsMixin.latest_mislabels"),
    ("store: runs", "core.store.results", "ResultsMixin.add_run"),
    ("store: runs", "core.store.results", "ResultsMixin.get_run"),
    ("job: progress writes", "core.jobs", "JobReporter.report"),
    ("job: cancel checks", "core.jobs", "JobReporter.cancelled"),
    ("embed (standardise, cache)", "core.embeddings", "embed"),
    ("detect: out-of-fold models", "core.mislabel.oof", "compute_oof"),
    ("detect: cleanlab", "core.mislabel.oof", "cleanlab_issues"),
    ("detect: kNN signals", "core.mislabel.signals", "neighbours"),
    ("detect: other", "core.mislabel.detector", "detect_mislabels"),
    ("hostcp: layer build", "core.selection.layer", "SelectionLayer.__init__"),
    ("hostcp: solves (forward)", "core.selection.layer", "SelectionLayer.__call__"),
    ("hostcp: backward", "torch", "Tensor.backward"),
    ("hostcp: greedy read-out", "core.selection.selector", "greedy_start"),
    ("hostcp: target check", "core.selection.selector", "detect_shift"),
    ("hostcp: other", "core.selection.selector", "HostCPSelector._select"),
    ("write selection.csv", "core.cli", "_write_text"),
)


def make_csv(path: Path, n: int, *, dim: int = 64, classes: int = 10, seed: int = 0) -> None:
    """A Gaussian mixture with 10 percent of labels flipped to another class."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    x = rng.normal(0, 2.0, (classes, dim))[y] + rng.normal(0, 1.0, (n, dim))
    flip = rng.random(n) < 0.1
    y = np.where(flip, (y + rng.integers(1, classes, n)) % classes, y)
    df = pd.DataFrame(x.astype(np.float32), columns=[f"f{i}" for i in range(dim)])
    df["label"] = y
    df.to_csv(path, index=False)


# ------------------------------------------------------------------ profiled child
class _Timers:
    """Exclusive wall seconds per label (each timed call minus the timed calls inside it), and
    inclusive seconds (everything under the outermost call of a label: what importing moreau
    costs with all it pulls in)."""

    def __init__(self) -> None:
        self.seconds: collections.Counter[str] = collections.Counter()
        self.inclusive: collections.Counter[str] = collections.Counter()
        self.calls: collections.Counter[str] = collections.Counter()
        self._depth: collections.Counter[str] = collections.Counter()
        self._local = threading.local()

    def run(self, label: str, fn, *args, **kwargs):
        stack = self._local.__dict__.setdefault("stack", [])
        t0 = time.perf_counter()
        stack.append(0.0)
        self._depth[label] += 1
        try:
            return fn(*args, **kwargs)
        finally:
            dt = time.perf_counter() - t0
            inner = stack.pop()
            self.seconds[label] += dt - inner
            self.calls[label] += 1
            self._depth[label] -= 1
            if not self._depth[label]:
                self.inclusive[label] += dt
            if stack:
                stack[-1] += dt

    def wrap(self, label: str, fn):
        def timed(*args, **kwargs):
            return self.run(label, fn, *args, **kwargs)

        timed.__wrapped__ = fn  # type: ignore[attr-defined]
        return timed


#: Packages whose imports are shown apart; the rest are summed as "import (other)".
HEAVY = ("torch", "cvxpy", "cvxpylayers", "diffcp", "clarabel", "moreau", "numba", "sympy", "triton",
         "sklearn", "scipy", "cleanlab", "pandas", "pyarrow", "numpy", "PIL", "torchvision", "umap", "core")


def _import_label(name: str) -> str:
    if name.startswith(("torch._dynamo", "torch._inductor")):
        return "import torch._dynamo (+inductor)"
    top = name.split(".")[0]
    return f"import {top}" if top in HEAVY else "import (other)"


def _patch_loaded(timers: _Timers, done: set[int]) -> None:
    """Wrap the :data:`TIMED` functions of the modules loaded so far (once each).

    Called after every import, so a function is wrapped before any other module can
    bind it by name (``from core.mislabel.oof import compute_oof``).
    """
    for i, (label, module, attr) in enumerate(TIMED):
        mod = sys.modules.get(module)
        if i in done or mod is None:
            continue
        owner, _, name = attr.rpartition(".")
        target = getattr(mod, owner, None) if owner else mod
        fn = getattr(target, name, None) if target is not None else None
        if fn is not None:  # else: the module is still loading, or the function moved
            setattr(target, name, timers.wrap(label, fn))
            done.add(i)


def _child(argv: list[str], report: Path) -> None:
    """Run ``hostcp select ARGV`` in this process with timers, then write them to ``report`` as JSON."""
    t_start = time.perf_counter()
    timers = _Timers()
    real_import = builtins.__import__
    done: set[int] = set()

    def timed_import(name, globals=None, locals=None, fromlist=(), level=0):  # noqa: A002
        if level or (name in sys.modules and not fromlist):
            return real_import(name, globals, locals, fromlist, level)
        module = timers.run(_import_label(name), real_import, name, globals, locals, fromlist, level)
        _patch_loaded(timers, done)
        return module

    builtins.__import__ = timed_import
    import core.cli as cli  # noqa: I001  (after the hook: its imports are timed)

    def inline_job(store, kind, fn, *, dataset_id=None):  # the job in this thread, with a real reporter
        from core.jobs import JobReporter

        job_id = store.create_job(kind, dataset_id=dataset_id)
        return fn(JobReporter(store, job_id)) or {}

    cli._run_job = inline_job
    rc = cli.main(argv)
    total = time.perf_counter() - t_start
    timed = sum(timers.seconds.values())
    report.write_text(json.dumps({
        "rc": rc, "total": total, "untimed": total - timed,
        "parts": dict(timers.seconds), "inclusive": dict(timers.inclusive), "calls": dict(timers.calls),
        "not_found": [f"{m}.{a}" for i, (_, m, a) in enumerate(TIMED) if i not in done],
    }))


def _command(code: Path | None, args: list[str]) -> tuple[list[str], dict[str, str]]:
    """``hostcp ARGS`` as a user runs it, or the same command on the ``core`` of another checkout."""
    if code is None:
        return [HOSTCP, *args], dict(os.environ)
    env = {**os.environ, "PYTHONPATH": str(code)}  # ahead of the editable install of this checkout
    # -P: no current folder on sys.path, or the checkout the benchmark runs from would win
    return [sys.executable, "-P", "-c", "import sys; from core.cli import main; sys.exit(main())", *args], env


def _timed_run(cmd: list[str], env: dict[str, str], log: Path) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds and peak RSS (GB) of one fresh process; exits with its stderr if it fails.

    CPU seconds (user + system) move less than wall seconds when other work shares the machine.
    """
    with open(log, "w") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(log.read_text())
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024 / 1024


def _profile(data: Path, out: Path, budget: str, code: Path | None) -> dict:
    report = out.with_suffix(".json")
    env = dict(os.environ) if code is None else {**os.environ, "PYTHONPATH": str(code)}
    cmd = [sys.executable, __file__, "--child", str(report), "select", str(data), "--out", str(out),
           "--budget", budget]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    return json.loads(report.read_text())


def _print_profile(n: int, prof: dict) -> None:
    parts = dict(prof["parts"])
    parts["(untimed: argument parsing, small calls)"] = prof["untimed"]
    imports = sum(v for k, v in parts.items() if k.startswith("import "))
    print(f"\n### Where the seconds go: `hostcp select` on {n} rows "
          f"(total {prof['total']:.2f} s, imports {imports:.2f} s)\n")
    print("| part | seconds | share | with what it calls | calls |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, sec in sorted(parts.items(), key=lambda kv: -kv[1]):
        if sec < 0.005:
            continue
        calls = prof["calls"].get(label, "")
        incl = prof["inclusive"].get(label)
        incl_txt = f"{incl:.2f}" if incl is not None and incl - sec > 0.005 else ""
        print(f"| {label} | {sec:.2f} | {100 * sec / prof['total']:.0f}% | {incl_txt} | {calls} |")
    if prof["not_found"]:
        print(f"\n(not timed, not found: {', '.join(prof['not_found'])})")


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        _child(sys.argv[3:], Path(sys.argv[2]))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,20000")
    ap.add_argument("--budget", default="0.1")
    ap.add_argument("--repeats", type=int, default=1, help="timed runs per size (fresh process each)")
    ap.add_argument("--profile", action="store_true", help="also print seconds by part per size")
    ap.add_argument("--compare", type=Path, metavar="DIR",
                    help="also time the command on the core/ of another checkout, runs interleaved")
    args = ap.parse_args()
    variants: dict[str, Path | None] = {"this checkout": None}
    if args.compare:
        variants[f"{args.compare}"] = args.compare.resolve()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(s) for s in args.sizes.split(",")):
            data = Path(tmp) / f"mix{n}.csv"
            make_csv(data, n)
            times: dict[str, list[float]] = {v: [] for v in variants}
            cpu: dict[str, list[float]] = {v: [] for v in variants}
            peaks: dict[str, float] = dict.fromkeys(variants, 0.0)
            for r in range(args.repeats):
                for i, (name, code) in enumerate(variants.items()):  # interleaved: same machine load
                    argv = ["select", str(data), "--out", str(Path(tmp) / f"out{n}-{i}-{r}"), "--budget",
                            args.budget]
                    cmd, env = _command(code, argv)
                    seconds, cpu_s, peak = _timed_run(cmd, env, Path(tmp) / "stderr.txt")
                    times[name].append(seconds)
                    cpu[name].append(cpu_s)
                    peaks[name] = max(peaks[name], peak)
            for name in variants:
                best = min(times[name])
                rows.append({"code": name, "points": n, "seconds (best)": round(best, 2),
                             "seconds (median)": round(statistics.median(times[name]), 2),
                             "seconds (all)": " ".join(f"{t:.1f}" for t in times[name]),
                             "CPU s (median)": round(statistics.median(cpu[name]), 2),
                             "points/s": round(n / best, 1), "peak RSS (GB)": round(peaks[name], 2)})
                print(rows[-1], flush=True)
            if args.profile:
                for i, (name, code) in enumerate(variants.items()):
                    print(f"\n{name}:", end="")
                    _print_profile(n, _profile(data, Path(tmp) / f"prof{n}-{i}", args.budget, code))
    print("\n| " + " | ".join(rows[0]) + " |")
    print("|" + " --- |" * len(rows[0]))
    for row in rows:
        print("| " + " | ".join(str(v) for v in row.values()) + " |")


if __name__ == "__main__":
    main()
