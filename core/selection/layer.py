"""Wraps the batch problem in a differentiable CvxpyLayer, built once per job.

Build a :class:`SelectionLayer` once per selection job and reuse it for every
batch (building costs 0.03-2 s; a solve 20-100 ms). It is not thread-safe:
never share one between jobs or cache it across sessions.

Solver: cvxpylayers 1.2 solves through diffcp; ``solver_args={"solve_method":
"Clarabel"}`` was faster than SCS at the default size (32 x 8: 22 ms forward,
78 ms forward+backward, against 25/89 ms with SCS) and gives more accurate
gradients; SCS is the fallback when Clarabel fails on a batch.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import torch
from diffcp import SolverError

from core.errors import ConfigError
from core.selection.problem import BatchProblem, build_problem

__all__ = ["SelectionLayer", "SOLVERS"]

logger = logging.getLogger(__name__)

#: What a solver that gave up on a batch raises (diffcp's status check, a singular KKT system);
#: anything else is a bug and propagates. Non-finite solutions count as a failure too.
_SOLVER_ERRORS = (SolverError, np.linalg.LinAlgError)

#: Solve methods the layer accepts (diffcp names).
SOLVERS = ("Clarabel", "SCS")


class SelectionLayer:
    """Differentiable solution map ``(Dn, Do, c, ub, budget[, M, quota]) -> (Zn, Zo, u)``.

    Inputs may carry a leading batch dimension to solve several problems in one
    call (diffcp solves them on a thread pool). Any device and float dtype are
    accepted: the solve runs on the CPU in float64 and the outputs come back on
    the device and dtype of ``Dn``; gradients flow through the move.
    """

    def __init__(
        self, n: int, m: int, *, gamma: float = 0.05, n_classes: int = 0, solver: str = "Clarabel"
    ) -> None:
        if solver not in SOLVERS:
            raise ConfigError(f"Unknown solver {solver!r}; expected one of {SOLVERS}.")
        from cvxpylayers.torch import CvxpyLayer

        self.spec: BatchProblem = build_problem(n, m, gamma=gamma, n_classes=n_classes)
        self.solver = solver
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            self._layer = CvxpyLayer(
                self.spec.problem,
                parameters=self.spec.parameters,
                variables=self.spec.variables,
                solver_args={"solve_method": solver},
            )

    @property
    def n(self) -> int:
        """Incoming batch size the layer was built for."""
        return self.spec.n

    @property
    def m(self) -> int:
        """Existing columns the layer was built for."""
        return self.spec.m

    def __call__(self, *params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Solve; ``params`` in the order of :attr:`BatchProblem.parameters`.

        Returns:
            ``(Zn (.., n, n), Zo (.., n, m), u (.., n))`` on the device/dtype of ``Dn``.
        """
        if len(params) != len(self.spec.parameters):
            raise ConfigError(
                f"The layer takes {len(self.spec.parameters)} tensors; got {len(params)}."
            )
        device, dtype = params[0].device, params[0].dtype
        cpu = [torch.as_tensor(p).to(device="cpu", dtype=torch.float64) for p in params]
        try:
            out = self._solve(cpu, None)
        except _SOLVER_ERRORS as e:  # the solver gave up on an ill-conditioned batch: retry with SCS
            if self.solver == "SCS":
                raise
            logger.warning("Clarabel failed on a batch (%s); retrying with SCS.", e)
            out = self._solve(cpu, {"solve_method": "SCS", "eps": 1e-7, "max_iters": 20000})
        return tuple(o.to(device=device, dtype=dtype) for o in out)  # type: ignore[return-value]

    def _solve(self, cpu: list[torch.Tensor], solver_args: dict | None) -> tuple[torch.Tensor, ...]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", UserWarning)
            out = self._layer(*cpu, solver_args=solver_args)
        if not all(torch.isfinite(o).all() for o in out):
            raise SolverError(f"{(solver_args or {}).get('solve_method', self.solver)} returned "
                              "a non-finite solution")
        return out
