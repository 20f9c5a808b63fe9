"""The ``hostcp`` command line: inspect, select, curve and export, over the same engine as the app.

The subcommands and the columns of ``selection.csv`` are a public contract:
extend them, never rename them. Errors in the input print one line on stderr
and exit with status 2; progress goes to stderr (a bar in a terminal, plain
lines otherwise).

Runs are stored in the app's project database (``$HOSTCP_HOME/hostcp.sqlite``) unless
``--store`` names another, so a CLI run shows up in the app; ``--store OUT/hostcp.sqlite``
keeps the layout of earlier versions. ``select`` and ``curve`` write ``OUT/project.json``
(see :mod:`core.projects`), which is how ``hostcp export OUT`` finds them again.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import NoReturn

import numpy as np

from core.cluster import connect  # light: Ray is imported only when --ray is given
from core.errors import HostcpError, one_line
from core.evaluate import parse_budgets  # light: its sklearn and torch load on use
from core.files import atomic_write
from core.projects import PROJECT_FILE, check_writable, find_project, open_store, write_project
from core.settings import method_settings, parse_settings

# Heavy packages (pandas, torch, cvxpy, sklearn, cleanlab) are imported inside the command that
# needs them: ``hostcp --help`` and ``hostcp inspect`` never load the engine
# (tests/test_imports.py checks it).

__all__ = ["main", "PROJECT_FILE", "SELECTION_COLUMNS", "load_input", "method_settings", "parse_settings"]

log = logging.getLogger(__name__)

#: Columns of ``selection.csv``, in order (public contract).
SELECTION_COLUMNS = ("index", "selected", "value", "mislabel_score", "flagged", "suggested_label")

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_CANCELLED = 0, 1, 2, 130


def load_input(source: str, *, label_column: str = "label", validation: bool = False):
    """Load DATA given on the command line: a file path, or ``demo:NAME`` for a built-in demo.

    ``validation``: the file is a clean validation set (``--val``), which may hold one class.
    """
    from core.data import load_dataset, load_demo
    from core.data.tables import LabelColumnError
    from core.data.validation import load_validation

    if source.startswith("demo:"):
        return load_demo(source.removeprefix("demo:"))
    path = Path(source)
    if not path.exists():
        raise HostcpError(f"{source}: no such file. Give a .zip, .csv, .parquet or .npz path, or demo:NAME.")
    try:
        load = load_validation if validation else load_dataset
        return load(path, label_column=label_column)
    except LabelColumnError as e:  # the loader says "choose it as the label column": say how, here
        name = "--val-label-column" if validation else "--label-column"
        flag = f"{name} {e.guess!r}" if e.guess is not None else f"{name} NAME"
        raise LabelColumnError(f"{e} Give it with {flag}.", guess=e.guess) from e


# ---------------------------------------------------------------- progress
class _ProgressPrinter:
    """Draws a job's progress on stderr: a bar in a terminal, a line per change otherwise."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self._last = ""

    def show(self, stage: str, fraction: float, message: str, eta: float | None) -> None:
        """Draw one progress report; a stage without a message is shown without a dangling colon."""
        pct = int(round(100 * fraction))
        eta_txt = f" ETA {eta:4.0f}s" if eta is not None and fraction < 1 else ""
        what = f"{stage}: {message}" if message else stage
        if self.tty:
            bar = "#" * (pct // 4) + "-" * (25 - pct // 4)
            line = f"\r[{bar}] {pct:3d}% {what}{eta_txt}"
            self.stream.write(line[:160].ljust(len(self._last)))
            self._last = line[:160]
        else:
            line = f"{pct:3d}% {what}"
            if line == self._last:
                return
            self._last = line
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self._last:
            self.stream.write("\n")
            self.stream.flush()


def _run_job(store, kind: str, fn, *, dataset_id: int | None = None) -> dict:
    """Run ``fn`` through the job runner (as the app does) and draw its progress until it ends."""
    from core.jobs import JobRunner

    runner = JobRunner(store)
    job_id = runner.submit(kind, fn, dataset_id=dataset_id)
    printer = _ProgressPrinter()
    try:
        job = store.get_job(job_id)
        while runner.is_alive(job_id):
            if job.status == "running" and job.stage and (job.message or job.stage != "starting"):
                printer.show(job.stage, job.fraction, job.message, job.eta_s)
            job = runner.wait(job_id, timeout=0.2)  # returns as soon as the job ends
    except KeyboardInterrupt:
        runner.cancel(job_id)
        runner.wait(job_id)
    job = runner.wait(job_id)
    printer.close()
    if job.status == "cancelled":
        raise KeyboardInterrupt
    if job.status == "failed":
        raise HostcpError(job.error or "the job failed")
    return job.result or {}


def _write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda fh: fh.write(text.encode()))


# ------------------------------------------------------------------ commands
def cmd_inspect(args: argparse.Namespace) -> int:
    from core.data import summarize
    from core.data.dataset import check_curatable

    dataset = load_input(args.data, label_column=args.label_column)
    check_curatable(dataset)  # classes too small for detection, or (N, C) too large: one line, exit 2
    print(summarize(dataset).to_text())
    return EXIT_OK


def cmd_select(args: argparse.Namespace) -> int:
    import pandas as pd

    from core.data.dataset import check_curatable, make_split
    from core.data.validation import with_validation
    from core.pipeline import SelectionSpec, run_selection
    from core.valuation import available_methods, get_method

    out = Path(args.out)
    if args.method not in available_methods():
        raise HostcpError(f"Unknown method {args.method!r}; choose one of {', '.join(available_methods())} "
                          "(--method).")
    check_writable(out)  # the database is elsewhere now: find out before the work, not after it
    config = parse_settings(args.set or [], method_settings(args.method))
    try:
        get_method(args.method, **config)  # bad values fail here, before any work
    except HostcpError as e:
        raise HostcpError(f"--set: {e}") from e
    spec = SelectionSpec(
        method=args.method, budget=args.budget, seed=args.seed, device=args.device, backbone=args.backbone,
        config=config, shards=args.shards,
    )
    data = load_input(args.data, label_column=args.label_column)
    if args.val:
        val = load_input(args.val, label_column=args.val_label_column or args.label_column, validation=True)
        dataset, split = with_validation(data, val)
        check_curatable(dataset)
    else:
        dataset = data
        check_curatable(data, val_fraction=args.val_fraction, test_fraction=0.0)  # before any work
        split = make_split(data.labels, val_fraction=args.val_fraction, test_fraction=0.0, seed=args.seed)
    store = open_store(args.store)
    did = store.add_dataset(dataset, split)
    n, names = data.n, np.asarray(dataset.class_names, dtype=object)
    del data, dataset  # the job loads the stored copy: do not hold an image stack twice
    with connect(args.ray) as executor:
        result = _run_job(
            store,
            "selection",
            lambda reporter: {"run_id": run_selection(store, did, spec, reporter=reporter,
                                                      executor=executor if args.ray else None)},
            dataset_id=did,
        )
    run = store.get_run(result["run_id"])
    mis = store.latest_mislabels(did)
    table = pd.DataFrame(
        {
            "index": np.arange(n),
            "selected": run.selected[:n].astype(int),
            "value": run.value[:n],
            "mislabel_score": mis["score"].to_numpy()[:n].round(6),
            "flagged": mis["flagged"].to_numpy()[:n].astype(int),
            "suggested_label": names[mis["suggested_label"].to_numpy()[:n]],
        }
    )[list(SELECTION_COLUMNS)]
    _write_text(out / "selection.csv", table.to_csv(index=False))
    write_project(out, store, did, run.id)
    k = int(table["selected"].sum())
    print(
        f"selected {k} of {len(run.value[:n][~np.isnan(run.value[:n])])} candidates with {args.method}; "
        f"{int(table['flagged'].sum())} rows flagged as likely mislabelled; wrote {out / 'selection.csv'} "
        f"(dataset {did}, run {run.id} in {store.path})",
    )
    if run.info.get("shift_detected"):  # the subset represents the validation set, not the pool
        print(f"target: {run.info['target']}")
    if run.info.get("readout_val_accuracy"):  # HOST-CP's candidates, judged on the validation set
        from core.selection.readout_choice import readout_line  # only then: core.selection loads torch

        print(readout_line(run.info))
    return EXIT_OK


def cmd_curve(args: argparse.Namespace) -> int:
    from core.explain import run_value_curve
    from core.pipeline import import_dataset
    from core.valuation import available_methods

    out = Path(args.out)
    budgets = parse_budgets(args.budgets)
    methods = [m.strip() for m in args.methods.split(",")] if args.methods else list(available_methods())
    unknown = sorted(set(methods) - set(available_methods()))
    if unknown:
        raise HostcpError(f"Unknown methods {unknown}; choose from {sorted(available_methods())}.")
    check_writable(out)
    dataset = load_input(args.data, label_column=args.label_column)
    store = open_store(args.store)
    did = import_dataset(store, dataset, seed=0)
    result: dict = {}

    def work(reporter, executor):
        table = run_value_curve(
            store,
            did,
            methods=methods,
            budgets=budgets,
            seeds=args.seeds,
            backbone=args.backbone,
            device=args.device,
            reporter=reporter,
            executor=executor if args.ray else None,
        )
        result["table"] = table
        return {"rows": len(table)}

    with connect(args.ray) as executor:
        _run_job(store, "curve", lambda reporter: work(reporter, executor), dataset_id=did)
    table = result["table"]
    _write_text(out / "curve.csv", table.to_csv(index=False))
    write_project(out, store, did)
    from core.charts import value_curve_figure

    _write_text(out / "curve.html", value_curve_figure(table).to_html(include_plotlyjs=True))
    print(curve_summary(table))
    print(f"wrote {out / 'curve.csv'} and {out / 'curve.html'}")
    return EXIT_OK


def curve_summary(table) -> str:
    """Mean test accuracy per method and budget, and its std over seeds when there are several.

    With one seed there is no spread to show (pandas' ``std`` of one value is NaN).
    """
    stats = ["mean", "std"] if table["seed"].nunique() > 1 else ["mean"]
    summary = table.groupby(["method", "budget"])["accuracy"].agg(stats).reset_index()
    return summary.to_string(index=False, float_format=lambda v: f"{v:.4f}")


def cmd_export(args: argparse.Namespace) -> int:
    from core.export import export_dataset, run_manifest_path
    from core.store import Store

    store_path, record = find_project(args.project)
    if not store_path.exists():
        raise HostcpError(f"{store_path}: no project database here. Run `hostcp select ... --out DIR` first, "
                          "then `hostcp export DIR`.")
    store = Store(store_path)
    datasets = store.list_datasets()
    if not datasets:
        raise HostcpError(f"{store_path} holds no dataset yet.")
    did = args.dataset if args.dataset is not None else record.get("dataset_id", datasets[0].id)
    run_id = args.run
    if run_id is None and record.get("dataset_id") == did:
        run_id = record.get("run_id")  # the run `select` made, not whatever ran last
    path = export_dataset(store, did, Path(args.out), what=args.what, fmt=args.format, run_id=run_id)
    manifest = json.loads(run_manifest_path(path).read_text(encoding="utf-8"))
    run = manifest["run"]
    used = f"run {run['id']} ({run['method']} at {run['budget']:.0%})" if run else "no selection run"
    print(f"wrote {path} and {run_manifest_path(path).name} (dataset {did}, {used})")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests); ``--help`` shows every default."""
    from core.cli_args import build_parser as build

    return build({"inspect": cmd_inspect, "select": cmd_select, "curve": cmd_curve, "export": cmd_export})


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``hostcp`` console script; returns the exit status.

    Run as the console script (``argv`` is ``None``), the process ends as soon as the
    command is done (:func:`_fast_exit`); called with an argument list (tests, other
    code), it returns.
    """
    code = _run(argv)
    if argv is None and not os.environ.get("HOSTCP_FULL_EXIT"):
        _fast_exit(code)
    return code


def _run(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return args.func(args)
    except HostcpError as e:
        print(f"hostcp {args.command}: error: {one_line(e, limit=2000)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as e:  # a folder that cannot be written, a full disk...
        print(f"hostcp {args.command}: error: {e.strerror or e}: {e.filename or ''}".rstrip(": "),
              file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"hostcp {args.command}: cancelled", file=sys.stderr)
        return EXIT_CANCELLED


def _fast_exit(code: int) -> NoReturn:
    """End the process now, skipping the interpreter's teardown of every loaded module.

    Measured on a 200-row ``hostcp select``: tearing down torch, cvxpy, moreau's
    torch._dynamo, sympy and numba took 2-3 s after the work was done, a fifth of the
    command. Nothing of ours needs it: the job has ended, every file was written
    atomically and every SQLite connection closed after its operation, so only
    logging and the standard streams are flushed here. ``HOSTCP_FULL_EXIT=1`` keeps
    the normal exit (for profilers and coverage, which report at exit).
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (hostcp ... | head): nothing left to say
            pass
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
