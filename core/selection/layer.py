"""Wraps the batch problem in a differentiable CvxpyLayer, built once per job.

Build a :class:`SelectionLayer` once per selection job and reuse it for every
batch (building costs 0.1-0.7 s; a solve 40-150 ms). It is not thread-safe:
never share one between jobs or cache it across sessions.

Backends (``solver``), measured side by side by ``benchmarks/solver_backends.py``
(n=32, m=8, 10 class quotas, forward+backward per problem, this 2-core CPU):

* ``"moreau"``: cvxpylayers' Moreau backend (a batched interior-point QP solver
  with its own autograd). Fastest: 3.8-5.4x Clarabel per problem forward+backward
  at B = 1-64 (90-140 ms against 480-550 ms on a loaded machine), 2-3x forward
  only; ``u`` within 1.5e-4 of Clarabel, gradients within 6e-4 relative (median;
  about 1 problem in 10 sits near a kink of the piecewise-affine solution map,
  where each solver returns a different one-sided derivative, SCS as well).
  Needs the zero bounds written as Parameters (see :mod:`core.selection.problem`);
  the layer feeds them, callers never see them.
* ``"Clarabel"`` (diffcp): the reference; more accurate gradients than SCS.
* ``"SCS"`` (diffcp): the last resort.

Failure policy: a backend that gives up on a call (a solver error, a status that
is not solved, a non-finite output, or for Moreau a solution below its zero
bounds by more than ``BOUND_TOL``) is retried for that whole call with the next
backend, ``moreau -> Clarabel -> SCS``; the first fallback of each kind is logged
as a warning, later ones at debug level and counted in :attr:`SelectionLayer.fallbacks`.
Any other exception is a bug and propagates.
"""

from __future__ import annotations

import importlib.util
import logging
import warnings
from collections import Counter
from typing import Any

import numpy as np
import torch
from diffcp import SolverError

from core.errors import ConfigError
from core.selection.problem import BatchProblem, build_problem

__all__ = ["BOUND_TOL", "DEFAULT_SOLVER", "SOLVERS", "BackendFailure", "SelectionLayer"]

logger = logging.getLogger(__name__)

#: Backends the layer accepts.
SOLVERS = ("moreau", "Clarabel", "SCS")

#: The fastest backend that matches Clarabel (benchmarks/solver_backends.py; tests/selection/test_backends.py
#: pins it against Clarabel on random instances).
DEFAULT_SOLVER = "moreau"

#: How far below its zero bound a returned Zn, Zo or u may be before the answer counts as a failure.
BOUND_TOL = 1e-6

#: Which backend takes over a call that the key failed.
_FALLBACK: dict[str, str | None] = {"moreau": "Clarabel", "Clarabel": "SCS", "SCS": None}

#: SCS as the last resort: tighter than its defaults, since its answers feed gradients.
_SCS_ARGS = {"solve_method": "SCS", "eps": 1e-7, "max_iters": 20000}


class BackendFailure(SolverError):
    """A backend returned, but its answer is unusable (status, non-finite values, violated bounds)."""


#: What a backend that gave up on a call raises (diffcp's status check, a singular KKT system, our own
#: answer checks); anything else is a bug and propagates.
_SOLVER_ERRORS = (SolverError, np.linalg.LinAlgError)


class SelectionLayer:
    """Differentiable solution map ``(Dn, Do, c, ub, budget[, M, quota]) -> (Zn, Zo, u)``.

    Unbatched inputs (``Dn (n, n)``, ...) solve one problem. Inputs with a leading
    batch dimension (``Dn (B, n, n)``, ...) solve B problems in one call, on every
    backend; an input without the batch dimension is shared by all B problems.
    Gradients flow to each problem's own inputs. Any device and float dtype are
    accepted: the solve runs on the CPU in float64 and the outputs come back on
    the device and dtype of ``Dn``; gradients flow through the move.
    """

    def __init__(
        self, n: int, m: int, *, gamma: float = 0.05, n_classes: int = 0, solver: str = DEFAULT_SOLVER
    ) -> None:
        if solver not in SOLVERS:
            raise ConfigError(f"Unknown solver {solver!r}; expected one of {SOLVERS}.")
        if solver == "moreau" and importlib.util.find_spec("moreau") is None:
            raise ConfigError("solver='moreau' needs the moreau package: pip install moreau "
                              "(or choose solver='Clarabel').")
        self.spec: BatchProblem = build_problem(
            n, m, gamma=gamma, n_classes=n_classes, param_bounds=solver == "moreau"
        )
        self.solver = solver
        #: Calls that fell back, by the backend that failed them.
        self.fallbacks: Counter[str] = Counter()
        self._bounds = [torch.zeros((), dtype=torch.float64) for _ in self.spec.bound_parameters]
        self._layer = _cvxpy_layer(self.spec, solver)
        self._diffcp: Any = None  # a Moreau layer's Clarabel/SCS fallback, built when first needed
        self._moreau_ctx = self._layer.ctx.solver_ctx if solver == "moreau" else None
        if solver == "moreau":
            _check_no_rows_dropped(self._layer, self.spec)

    @property
    def n(self) -> int:
        """Incoming batch size the layer was built for."""
        return self.spec.n

    @property
    def m(self) -> int:
        """Existing columns the layer was built for."""
        return self.spec.m

    def __call__(self, *params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Solve; ``params`` in the order of :attr:`BatchProblem.parameters`, each optionally batched.

        Returns:
            ``(Zn (.., n, n), Zo (.., n, m), u (.., n))`` on the device/dtype of ``Dn``;
            ``..`` is ``(B,)`` when any input carried a batch dimension, else empty.
        """
        if len(params) != len(self.spec.parameters):
            raise ConfigError(
                f"The layer takes {len(self.spec.parameters)} tensors; got {len(params)}."
            )
        device, dtype = params[0].device, params[0].dtype
        cpu = [torch.as_tensor(p).to(device="cpu", dtype=torch.float64) for p in params] + self._bounds
        backend = self.solver
        while True:
            try:
                out = self._solve(backend, cpu)
                break
            except _SOLVER_ERRORS as e:  # the backend gave up on this call: the next one takes it
                nxt = _FALLBACK[backend]
                if nxt is None:
                    raise
                self._log_fallback(backend, nxt, e)
                backend = nxt
        if not (torch.is_grad_enabled() and any(p.requires_grad for p in cpu)):
            out = tuple(o.detach() for o in out)  # Moreau attaches a graph even then; diffcp does not
        return tuple(o.to(device=device, dtype=dtype) for o in out)  # type: ignore[return-value]

    def _solve(self, backend: str, cpu: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        layer, solver_args = self._backend(backend)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", UserWarning)
            out = layer(*cpu, solver_args=solver_args)
        if not all(torch.isfinite(o).all() for o in out):
            raise BackendFailure(f"{backend} returned a non-finite solution")
        if backend == "moreau":
            self._check_moreau(out)
        return out

    def _backend(self, backend: str) -> tuple[Any, dict | None]:
        """The callable layer and per-call solver args of ``backend``."""
        if backend == self.solver:
            return self._layer, None
        if self.solver != "moreau":  # Clarabel -> SCS: the same diffcp layer, other solve method
            return self._layer, _SCS_ARGS
        if self._diffcp is None:  # a Moreau layer's first fallback: build the diffcp layer now
            self._diffcp = _cvxpy_layer(self.spec, "Clarabel")
        return self._diffcp, (_SCS_ARGS if backend == "SCS" else None)

    def _check_moreau(self, out: tuple[torch.Tensor, ...]) -> None:
        """Moreau reports failure through a status, not an exception; its bounds are checked too."""
        statuses = _moreau_statuses(self._moreau_ctx)
        bad = [s for s in statuses if s not in _MOREAU_OK]
        if bad:
            raise BackendFailure(f"moreau returned status {bad[0]} on {len(bad)} of {len(statuses)} problems")
        low = min(float(o.detach().min()) for o in out)
        if low < -BOUND_TOL:
            raise BackendFailure(f"moreau returned a solution below its zero bounds ({low:.3g})")

    def _log_fallback(self, failed: str, nxt: str, e: Exception) -> None:
        first = failed not in self.fallbacks
        self.fallbacks[failed] += 1
        log = logger.warning if first else logger.debug
        log("%s failed on a call (%s); retrying it with %s.%s", failed, e, nxt,
            " Later fallbacks are logged at debug level." if first else "")


#: Moreau settings: always its interior-point method. Its "auto" picks an active-set method for QPs
#: under 500 variables (n=16, m=4 here), which stopped at MaxIterations on every problem we tried.
_MOREAU_ARGS = {"solver": "ipm"}

#: Moreau statuses whose answer is kept (AlmostSolved: reduced tolerances, about 5e-5).
_MOREAU_OK = ("Solved", "AlmostSolved")


def _moreau_statuses(ctx: Any) -> list[str]:
    """Per-problem status names of the last solve of a cvxpylayers Moreau context."""
    status = ctx.get_torch_solver("cpu").info.status
    return [str(s) for s in (status if isinstance(status, list | tuple) else [status])]


def _cvxpy_layer(spec: BatchProblem, solver: str) -> Any:
    from cvxpylayers.torch import CvxpyLayer

    params = spec.parameters + spec.bound_parameters
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        if solver == "moreau":
            return CvxpyLayer(spec.problem, parameters=params, variables=spec.variables, solver="MOREAU",
                              solver_args=dict(_MOREAU_ARGS))
        return CvxpyLayer(spec.problem, parameters=params, variables=spec.variables,
                          solver_args={"solve_method": solver})


def _check_no_rows_dropped(layer: Any, spec: BatchProblem) -> None:
    """Every constraint row must reach the solver as a row of ``A``.

    cvxpy moves identity rows (``x >= 0``) out of ``A`` into direct cones that
    cvxpylayers' Moreau interface ignores; the parameterised bounds avoid that.
    If a cvxpy or cvxpylayers upgrade drops rows again, fail at build time.
    """
    import cvxpy as cp

    want_eq = sum(c.size for c in spec.problem.constraints if isinstance(c, cp.constraints.Equality))
    want_ineq = sum(c.size for c in spec.problem.constraints if isinstance(c, cp.constraints.Inequality))
    dims = layer.ctx.cone_dims
    if (dims.zero, dims.nonneg) != (want_eq, want_ineq):
        raise RuntimeError(
            f"The Moreau layer lost constraint rows: {dims.zero} equalities and {dims.nonneg} "
            f"inequalities reached the solver, the problem has {want_eq} and {want_ineq}. "
            "Use solver='Clarabel' and report the cvxpy/cvxpylayers versions."
        )
