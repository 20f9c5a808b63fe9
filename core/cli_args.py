"""The ``hostcp`` command line's arguments (the commands themselves are in :mod:`core.cli`).

Flags are a public contract, as the commands are: add, never rename.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from core.evaluate import DEFAULT_BUDGETS

__all__ = ["build_parser"]


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--label-column", default="label", help="label column of a CSV/Parquet file")


def _ray(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ray", metavar="ADDRESS", default=None,
                   help="run on a Ray cluster: HOST:PORT of a running one (ray start --head prints it), or "
                   "'local' for one on this machine started for the command; default: in this process")


_STORE_HELP = ("project database (default: the app's, $HOSTCP_HOME/hostcp.sqlite, so the run shows up "
               "in the app; OUT/hostcp.sqlite keeps the layout of earlier versions)")


def _methods_help() -> str:
    from core.valuation import available_methods

    names = "; ".join(f"{name}: {label}" for name, label in available_methods().items())
    return f"selection method, one of {names}"


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: ...)`` after each option that has a default (not after ``None`` or off flags)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def build_parser(commands: dict[str, Callable[[argparse.Namespace], int]]) -> argparse.ArgumentParser:
    """The parser of ``hostcp``; ``commands`` maps each subcommand to the function that runs it."""
    parser = argparse.ArgumentParser(
        prog="hostcp", description="HOST-CP subset selection and label review for labelled datasets."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log engine details on stderr")
    sub = parser.add_subparsers(dest="command", required=True)
    fmt = _Help

    p = sub.add_parser("inspect", help="load a dataset and print a summary (or what is wrong with it)",
                       formatter_class=fmt)
    p.add_argument("data", help="a .zip of class folders, .csv, .parquet, .npz, or demo:NAME")
    _common(p)
    p.set_defaults(func=commands["inspect"])

    p = sub.add_parser("select", help="select the training subset of highest value", formatter_class=fmt)
    p.add_argument("data", help="a .zip of class folders, .csv, .parquet, .npz, or demo:NAME")
    p.add_argument("--out", required=True, help="folder for selection.csv and project.json")
    p.add_argument("--val", help="validation set; without it a stratified share of DATA is held out")
    p.add_argument("--val-label-column", default=None,
                   help="label column of VAL when it is not DATA's (default: --label-column)")
    p.add_argument("--budget", type=float, default=0.1, help="fraction of candidates to select")
    p.add_argument("--method", default="hostcp", help=_methods_help())
    p.add_argument("--seed", type=int, default=0, help="seed of the split and the method")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where to compute")
    p.add_argument("--backbone", default="auto", help="embedding backbone (auto, standardize, pixels...)")
    p.add_argument("--val-fraction", type=float, default=0.2, help="held-out share without --val")
    p.add_argument("--store", help=_STORE_HELP)
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="a method setting, repeatable (HOST-CP: HostCPConfig fields, e.g. learn_phi=false); "
                   "an unknown KEY lists the valid ones")
    p.add_argument("--shards", type=int, default=1,
                   help="HOST-CP: split its online passes into this many shards, run at once on the --ray "
                   "cluster (without --ray, one after another here, with the same result)")
    _ray(p)
    _common(p)
    p.set_defaults(func=commands["select"])

    p = sub.add_parser("curve", help="value curves: test accuracy of each method's subset per budget",
                       formatter_class=fmt)
    p.add_argument("data", help="a .zip of class folders, .csv, .parquet, .npz, or demo:NAME")
    p.add_argument("--out", required=True, help="folder for curve.csv, curve.html and project.json")
    p.add_argument("--budgets", default=",".join(str(b) for b in DEFAULT_BUDGETS),
                   help="comma-separated fractions")
    p.add_argument("--methods", default="", help="comma-separated method names; empty: all")
    p.add_argument("--seeds", type=int, default=3, help="repeats per method and budget")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where to compute")
    p.add_argument("--backbone", default="auto", help="embedding backbone")
    p.add_argument("--store", help=_STORE_HELP)
    _ray(p)
    _common(p)
    p.set_defaults(func=commands["curve"])

    p = sub.add_parser("export", help="export the cleaned dataset with its per-row and run manifests",
                       formatter_class=fmt)
    p.add_argument("project", nargs="?", default=None,
                   help="a folder from select --out, or a .sqlite file; default: the app's database")
    p.add_argument("--out", required=True, help="output file (.zip, .csv, .parquet or .npz)")
    p.add_argument("--dataset", type=int, help="dataset id (default: the one select made, else the newest)")
    p.add_argument("--run", type=int, help="run id (default: the one select made, else the newest)")
    p.add_argument(
        "--what",
        default="subset",
        choices=["subset", "kept"],
        help="the chosen subset, or all kept (not excluded) examples",
    )
    p.add_argument("--format", default=None, choices=["zip", "csv", "parquet", "npz"],
                   help="default: from the --out extension")
    p.set_defaults(func=commands["export"])
    return parser
