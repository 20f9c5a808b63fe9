"""Hostile inputs through the real command line: exit code, lines of stderr and peak memory of each.

Usage::

    .venv/bin/python benchmarks/hostile_inputs.py            # 100 inputs and the maximal one: ~15 min
    .venv/bin/python benchmarks/hostile_inputs.py --quick    # 48 fast inputs: ~7 min
    .venv/bin/python benchmarks/hostile_inputs.py --only npz --bound-gib 5

The catalogue (``tests/data/hostile.py``: bombs, huge and mixed images, duplicate
columns, 10,000 classes, unreadable members, traversal paths, symlinks, pickled
and crafted NPZ files, 0-byte and truncated files, bad encodings, NaN/inf, and the
``test_bad_input.py`` cases) is written to a temporary folder. Each input runs
through ``hostcp inspect`` and ``hostcp select --method random --out DIR`` as
child processes with ``HOSTCP_HOME`` in that folder; the peak RSS of each child
is its own (``os.wait4``; this process imports nothing large and builds every input
in a child, because Linux children inherit the peak RSS of the parent that forked
them). A refused input must exit 2 with one line on stderr;
an accepted one must exit 0. Every run must stay under ``--bound-gib``. The last
row is the largest image input the default limits accept (a full 1.5 G-value
stack, 8 images at the per-image pixel cap); its peak is the bound's reason.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REFUSED_RC = 2


@dataclass(frozen=True)
class Case:
    """What this process knows of a catalogue entry (see ``tests/data/hostile.py``)."""

    name: str
    args: tuple[str, ...]
    inspect: str
    select: str


def _cases_of_catalogue(quick: bool, only: str, maximal: bool) -> None:
    """Child mode: print the limits and the chosen cases as JSON (keeps the big imports out of the parent)."""
    sys.path.insert(0, str(ROOT))
    from core.data.limits import LoadLimits
    from tests.data.hostile import MAXIMAL_ACCEPTED, catalogue

    cases = [c for c in catalogue(quick=quick) if only in c.name]
    if maximal and only in MAXIMAL_ACCEPTED.name:
        cases.append(MAXIMAL_ACCEPTED)
    limits = ", ".join(f"{k}={v:,}" for k, v in vars(LoadLimits()).items())
    rows = [{"name": c.name, "args": list(c.args), "inspect": c.inspect, "select": c.select} for c in cases]
    print(json.dumps({"limits": limits, "cases": rows}))


def _build(name: str, folder: str) -> None:
    """Child mode: write one input into ``folder`` and print its path."""
    sys.path.insert(0, str(ROOT))
    from tests.data.hostile import MAXIMAL_ACCEPTED, catalogue

    case = next(c for c in [*catalogue(), MAXIMAL_ACCEPTED] if c.name == name)
    print(case.build(Path(folder)))


@dataclass(frozen=True)
class Run:
    """One command on one input."""

    rc: int
    stderr_lines: int
    peak_mib: float
    seconds: float
    first_line: str


def run(cmd: list[str], *, home: Path, timeout: float) -> Run:
    """Run ``cmd`` as a child; its exit status, stderr and peak RSS (of that child alone)."""
    env = dict(os.environ, HOSTCP_HOME=str(home))
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=err)
        killer = threading.Timer(timeout, proc.kill)
        killer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        killer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.monotonic() - start
        err.seek(0)
        text = err.read().decode(errors="replace")
    lines = text.splitlines()
    return Run(proc.returncode, len(lines), usage.ru_maxrss / 1024, seconds, lines[0] if lines else "")


def check(case: Case, command: str, result: Run, bound_mib: float) -> dict[str, str]:
    """What went wrong with one run, by criterion (``refusal``, ``accepted``, ``memory``); empty if ok."""
    wrong = {}
    if getattr(case, command) == "reject":
        if result.rc != REFUSED_RC or result.stderr_lines != 1:
            wrong["refusal"] = f"{command} rc {result.rc} with {result.stderr_lines} stderr lines"
    elif result.rc != 0:
        wrong["accepted"] = f"{command} rc {result.rc}: {result.first_line[:120]}"
    if result.peak_mib > bound_mib:
        wrong["memory"] = f"{command} peak {result.peak_mib:.0f} MiB"
    return wrong


def _run_case(case: Case, folder: Path, *, timeout: float) -> tuple[Run, Run]:
    """Build one input in a child, then run ``inspect`` and ``select`` on it; the files are removed after."""
    me = [sys.executable, str(Path(__file__).resolve())]
    built = subprocess.run(
        [*me, "--build", case.name, str(folder)], check=True, capture_output=True, text=True
    )
    path = built.stdout.strip().splitlines()[-1]
    hostcp, home, out = [sys.executable, "-m", "core.cli"], folder / "home", str(folder / "out")
    inspect = run([*hostcp, "inspect", path, *case.args], home=home, timeout=timeout)
    select = run([*hostcp, "select", path, "--method", "random", "--out", out, *case.args], home=home,
                 timeout=timeout)  # fmt: skip
    shutil.rmtree(folder)  # free the disk as we go
    return inspect, select


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the slow inputs and the maximal one")
    parser.add_argument("--only", default="", help="run only inputs whose name contains this")
    parser.add_argument("--bound-gib", type=float, default=5.0, help="peak RSS every run must stay under")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per command")
    parser.add_argument("--no-maximal", action="store_true", help="skip the maximal accepted input")
    parser.add_argument("--show-errors", action="store_true", help="print each refusal's stderr line")
    parser.add_argument("--list-cases", action="store_true", help=argparse.SUPPRESS)  # child modes
    parser.add_argument("--build", nargs=2, metavar=("NAME", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.list_cases:
        _cases_of_catalogue(args.quick, args.only, maximal=not (args.quick or args.no_maximal))
        return 0
    if args.build:
        _build(*args.build)
        return 0
    bound_mib = args.bound_gib * 1024
    me = [sys.executable, str(Path(__file__).resolve())]
    flags = [flag for flag, on in (("--quick", args.quick), ("--no-maximal", args.no_maximal)) if on]
    listed = subprocess.run(
        [*me, "--list-cases", "--only", args.only, *flags],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    catalogue = json.loads(listed.stdout)
    cases = [Case(c["name"], tuple(c["args"]), c["inspect"], c["select"]) for c in catalogue["cases"]]
    print("LoadLimits: " + catalogue["limits"])
    print(f"{len(cases)} inputs; bound {args.bound_gib:g} GiB peak RSS per command\n")
    header = f"{'input':<44} {'inspect rc/lines/MiB':>21} {'select rc/lines/MiB':>21} {'s':>6}  verdict"
    print(header)
    print("-" * len(header))
    failures: dict[str, list[str]] = {}
    peaks: list[float] = []
    with tempfile.TemporaryDirectory(prefix="hostile-") as tmp:
        for i, case in enumerate(cases):
            folder = Path(tmp) / f"{i:03d}"
            folder.mkdir()
            inspect, select = _run_case(case, folder, timeout=args.timeout)
            wrong = {}
            for command, result in (("inspect", inspect), ("select", select)):
                for criterion, what in check(case, command, result, bound_mib).items():
                    wrong[f"{criterion}:{command}"] = what
                    failures.setdefault(criterion, []).append(case.name)
            peaks += [inspect.peak_mib, select.peak_mib]
            verdict = "ok" if not wrong else "FAIL: " + "; ".join(wrong.values())
            cells = " ".join(f"{f'{r.rc}/{r.stderr_lines}/{r.peak_mib:.0f}':>21}" for r in (inspect, select))
            print(f"{case.name:<44} {cells} {inspect.seconds + select.seconds:6.1f}  {verdict}", flush=True)
            if args.show_errors:
                for r in (inspect, select):
                    if r.rc == REFUSED_RC:
                        print(f"    {r.first_line[:300]}")
    refused = sum(1 for c in cases for cmd in ("inspect", "select") if getattr(c, cmd) == "reject")

    def verdict(criterion: str) -> str:
        bad = sorted(set(failures.get(criterion, [])))
        return "yes" if not bad else f"NO ({', '.join(bad)})"

    print(
        f"\nRESULT over {len(cases)} inputs, {2 * len(cases)} runs: all {refused} refusals exited "
        f"{REFUSED_RC} with one stderr line: {verdict('refusal')}; every accepted run exited 0: "
        f"{verdict('accepted')}; every run under {args.bound_gib:g} GiB peak RSS: {verdict('memory')} "
        f"(largest {max(peaks, default=0):.0f} MiB)."
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
