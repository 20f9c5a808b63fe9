"""HostCPConfig: the settings of HOST-CP, checked when they are made (values and types)."""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from functools import cache
from typing import Any, get_type_hints

from core.errors import ConfigError
from core.selection.layer import DEFAULT_SOLVER, SOLVERS

__all__ = ["HostCPConfig", "LEARN_PHI_NOTE", "TARGETS", "ScaleConfig"]

#: Why phi is not learned by default, for the run's info (issue 11: a default is on only where the
#: tuning folds show it helps). Learning phi through the convex layer was within noise of phi frozen
#: at the encoder's metric on every benchmark measured (6 tuning folds: -0.2 points per cell, learned
#: minus frozen; the test split, for the record: -0.05 over 20 cells) and took about half of the run;
#: without it the learning passes have nothing to learn (theta only serves phi's lookahead), so they
#: are skipped. Under distribution shift (``benchmarks/shift.py``, 24 cells) it did not pay either:
#: -0.6 points a cell with the target check off, -0.06 on top of it; what pays there is the
#: target estimate (:mod:`core.selection.target`), which does not need phi to learn.
LEARN_PHI_NOTE = ("phi frozen at the encoder's metric (learn_phi=false, the default): learning it was within "
                  "noise of frozen on every benchmark measured, with or without a shift, and took half the "
                  "run; set learn_phi=true to learn it from the validation set")

#: ``HostCPConfig.target``: whom the read-out represents (:mod:`core.selection.target`). "auto" (the
#: default): the validation set's distribution when a test finds the pool shifted from it, else the
#: pool; "on": always the validation set's; "off": always the pool (HOST-CP before issue 11 part 2).
TARGETS = ("auto", "on", "off")

_WORDS = {bool: "true or false (bool)", int: "an integer (int)", float: "a number (float)", str: "text (str)"}


@dataclass(frozen=True)
class ScaleConfig:
    """How much work a HOST-CP run does at most: what a user with a large pool turns.

    The learning passes run on at most ``learn_sample`` points, the online read-out pass on
    at most ``score_sample``, and a swap pass re-decides at most ``swap_batches`` clusters,
    so the number of solves stops growing with the data (a million points: 31,000 problems
    per full pass, 20-45 ms each); the greedy start always sees every point. The read-out's
    candidates (:mod:`core.selection.readout_choice`) are each judged by an MLP trained on at
    most ``choice_sample`` of their points (5,000: 3.6 s a candidate on 2 cores, 20,000: 14 s);
    0 keeps the swap passes' set without a choice.
    ``solve_group`` problems go to the solver in one call (they see one snapshot of the
    existing set). Measured on the tuning folds (digits 0 / 30 percent, mixture 10 percent;
    2 folds, budgets 5-30 percent, one run): ``solve_group=8`` took 16 percent less time
    than 4 at the same margin over the best baseline (114.1 against 115.5 points summed
    over the 12 cells), 16 lost 3 points on clean digits.

    Why a nested dataclass rather than module constants: these five do not change what
    the method is, only how much of the data it looks at, and a user with a million points
    (or a test that must be fast) needs them; as constants they would be hidden, as fields
    of :class:`HostCPConfig` they would crowd the method's own settings. They are set as
    ``HostCPConfig(scale=ScaleConfig(learn_sample=5000))``, as a dict in JSON settings
    (``{"scale": {"learn_sample": 5000}}``) or as ``--set scale.learn_sample=5000``.
    """

    solve_group: int = 8  # batch problems per solver call, against one snapshot of the existing set
    learn_sample: int = 20_000  # the learning passes see at most this many points (a random sample)
    score_sample: int = 100_000  # the online read-out pass scores at most this many (the rest score 0)
    swap_batches: int = 3_000  # a swap pass re-decides at most this many cluster batches (a random share)
    choice_sample: int = 5_000  # a candidate read-out is judged on at most this many of its points; 0: none

    def __post_init__(self) -> None:
        _check_types(self)
        for f in fields(self):
            zero_ok = f.name == "choice_sample"  # 0: no choice
            if getattr(self, f.name) < (0 if zero_ok else 1):
                least = "0 or more" if zero_ok else "positive"
                raise ConfigError(f"ScaleConfig.{f.name} must be {least}; got {getattr(self, f.name)}.")


@dataclass(frozen=True)
class HostCPConfig:
    """Settings of HOST-CP.

    Defaults were chosen on tuning folds (``benchmarks/tune_hostcp.py``: re-splits of
    the benchmark's train and validation rows, never its test rows), 3 folds of digits
    clean / 30 percent noise and the mixture clean / 10 percent noise, at budgets 5-30
    percent. What they decided (margin over the best baseline, summed over 16 cells):
    reading the set out with per-class greedy facility location in f_phi space, then
    swap passes through the layer, instead of the online pass alone: +20 points; no row
    weighting by label quality: it pulled the set to easy, central points and cost 1-4
    points at 20-30 percent on clean data; f_phi starting as the encoder's own metric
    (PCA axes): needed on low-dimensional data, where a random projection distorts
    distances. The knobs that lost there (the online read-out as the start, quality
    weighting, a random projection, distance powers 2-3, class allocation by coverage,
    closing a margin of unflagged suspects) are no longer settings, nor is a non-zero
    initial label embedding, which no benchmark ever chose: the engine has only the path
    that won (README, "How the read-out was chosen"). Learned versus frozen phi is within
    noise (see the README's results). Moreau instead of Clarabel took a third of the time
    (28.5 s against 86.2 s a run) with the margin over the best baseline within noise
    (115.5 against 115.8 points summed over 12 cells). How much of a large pool a run
    looks at is :class:`ScaleConfig`. Values nobody tunes are module constants beside the
    code that uses them, each with the reason for its value: ``MISSING_COST``
    (:mod:`~core.selection.batch`), ``COST_SCALE`` (:mod:`~core.selection.model`),
    ``VAL_BATCH`` and ``TORCH_THREADS`` (:mod:`~core.selection.online`); phi is updated at
    every solver call (``phi_every`` was 1 in every benchmark).

    Every field is checked against its annotation (``int``, ``float``, ``bool``, ``str``;
    a bool is not a number, an int is a float) so that a wrong type fails here, in one
    line, rather than deep inside a run.
    """

    epochs: int = 2  # learning passes (phi and theta updated; with learn_phi only); a read-out pass follows
    batch_size: int = 32  # incoming points per convex problem (n); solve time grows ~n^3
    n_existing: int = 8  # m nearest existing points per incoming point (Do columns)
    gamma: float = 0.05  # weight of the quadratic term; > 0 or the layer's gradient is zero
    proj_dim: int = 32  # dimension of the f_phi space where distances are measured (starts at PCA axes)
    learn_cost: bool = True  # learned opening cost c_phi(y, quality) in the objective
    learn_phi: bool = False  # learn phi by the validation lookahead (off by default: LEARN_PHI_NOTE)
    lr_phi: float = 0.01  # Adam step size of phi
    lr_theta: float = 0.5  # SGD step of theta, also the lookahead step eta
    exclude_flagged: bool = True  # flagged suspects may not be opened (ub = 0), still represented
    class_quotas: bool = True  # per-class quotas: counts proportional to class sizes
    swap_passes: int = 2  # read-out passes that re-decide each cluster against the rest of the set
    target: str = "auto"  # represent the validation set's distribution: "auto" (if shifted), "on", "off"
    solver: str = DEFAULT_SOLVER  # backend of the convex layer (core.selection.layer.SOLVERS)
    scale: ScaleConfig = field(default_factory=ScaleConfig)  # how much of a large pool a run looks at

    def __post_init__(self) -> None:
        if isinstance(self.scale, Mapping):  # JSON settings and --set scale.KEY=VALUE give a dict
            names = {f.name for f in fields(ScaleConfig)}
            unknown = sorted(set(self.scale) - names)
            if unknown:
                raise ConfigError(
                    f"HostCPConfig.scale has no setting {unknown[0]!r}; valid: {', '.join(sorted(names))}."
                )
            object.__setattr__(self, "scale", ScaleConfig(**self.scale))
        _check_types(self)
        for name in ("epochs", "swap_passes", "proj_dim", "n_existing"):
            if getattr(self, name) < (0 if name in ("epochs", "swap_passes") else 1):
                raise ConfigError(f"HostCPConfig.{name} must be positive; got {getattr(self, name)}.")
        if not 4 <= self.batch_size <= 128:
            raise ConfigError(
                f"HostCPConfig.batch_size must be in [4, 128] (solve time grows fast); got "
                f"{self.batch_size}."
            )
        if self.gamma <= 0:
            raise ConfigError(f"HostCPConfig.gamma must be > 0 (0 gives zero gradients); got {self.gamma}.")
        if self.target not in TARGETS:
            raise ConfigError(f"HostCPConfig.target must be one of {TARGETS}; got {self.target!r}.")
        if self.solver not in SOLVERS:
            raise ConfigError(f"HostCPConfig.solver must be one of {SOLVERS}; got {self.solver!r}.")


@cache
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)  # the annotations are strings here (``from __future__``)


def _check_types(obj: Any) -> None:
    """Every field of the dataclass ``obj`` against its annotation; numbers normalised in place.

    An ``int`` field takes any integer but not a bool (``True`` is an int in Python, and
    ``epochs=True`` is a mistake); a ``float`` field also takes an integer (``gamma=1``)
    and stores it as a float.

    Raises:
        ConfigError: naming the field, the expected type and the value.
    """
    cls = type(obj)
    for f in fields(obj):
        kind, value = _hints(cls)[f.name], getattr(obj, f.name)
        if kind is bool:
            ok = isinstance(value, bool)
        elif kind in (int, float):
            number = numbers.Integral if kind is int else numbers.Real  # numpy's numbers are too
            ok = isinstance(value, number) and not isinstance(value, bool)
            if ok:
                object.__setattr__(obj, f.name, kind(value))
        elif kind is str:
            ok = isinstance(value, str)
        else:
            ok = isinstance(value, kind)
        if not ok:
            word = _WORDS.get(kind, f"a {kind.__name__}")
            raise ConfigError(
                f"{cls.__name__}.{f.name} must be {word}; got {value!r} ({type(value).__name__})."
            )
