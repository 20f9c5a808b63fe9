"""Builds HOST-CP's convex subset-selection problem for one mini-batch (DPP, fixed sizes).

The problem is the facility-location (k-median) relaxation of method.md step 2,
with existing points as facilities that are already open for free::

    minimise   <Dn, Zn> + <Do, Zo> + c @ u + gamma * (|Zn|^2 + |Zo|^2 + |u|^2)
    subject to Zn @ 1 + Zo @ 1 = 1          every incoming point is represented
               0 <= Zn[i, j] <= u[j]        only opened points represent others
               Zo >= 0
               0 <= u <= ub                 ub = 0: may not be opened (flagged, padding)
               sum(u) <= budget
               [M @ u <= quota]             optional per-class quotas (M one-hot, (C, n))

It bounds the opened mass ``u`` (not ``sum(Zn)`` as the reference code does),
and the quadratic term (``gamma > 0``) makes the solution map differentiable.

``param_bounds=True`` writes the constant bounds ``Zn >= 0``, ``Zo >= 0`` and
``u >= 0`` against a scalar Parameter ``lb`` (fed 0 by the layer) instead of the
constant 0. Why: for solvers that take cones directly on the variable (Moreau),
cvxpy 1.9 moves every "variable >= constant 0" row out of ``A`` into
``data["dir_cones"]`` (its ``ExtractDirectCones`` reduction), and cvxpylayers 1.2
never passes those to Moreau, so the bounds are silently dropped (measured:
``z >= 0`` came back as -9.7). A bound with a Parameter on its right-hand side
is not an identity row, stays in ``A`` and is enforced. Only such single-entry
rows are extracted; every other constant right-hand side here (the row sums
``== 1``) has several entries per row and stays where it is.

Conventions the caller follows (see :func:`pad_batch_inputs`):

* No existing set yet, or fewer than ``m`` existing points: the missing ``Do``
  columns hold a constant ``missing_cost`` (an "unrepresented" fallback facility),
  so the problem stays feasible and DPP; nothing in the problem changes shape.
* A short last batch is padded to ``n`` rows: padded rows have ``Do = 0`` (they are
  represented for free by a fallback column), ``Dn`` rows/columns at
  ``missing_cost`` and ``ub = 0``, so they neither open nor attract mass.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from core.errors import ConfigError
from core.selection.solver_imports import cp  # cvxpy, without torch's compiler (see there)

__all__ = ["BatchProblem", "build_problem"]


@dataclass(frozen=True, eq=False)
class BatchProblem:
    """A built cvxpy problem and its parameters/variables in layer order.

    Attributes:
        problem: The DPP-compliant cvxpy problem.
        parameters: ``[Dn (n, n), Do (n, m), c (n,), ub (n,), budget ()]`` plus
            ``[M (C, n), quota (C,)]`` when built with classes: what a caller feeds.
        bound_parameters: ``[lb ()]`` with ``param_bounds=True`` (the layer feeds
            0 and appends it after :attr:`parameters`), else ``[]``.
        variables: ``[Zn (n, n), Zo (n, m), u (n,)]``.
        n: Incoming batch size.
        m: Number of existing-neighbour columns.
        n_classes: Number of classes of the quota constraint, or 0 (none).
        gamma: Weight of the quadratic term.
    """

    problem: cp.Problem
    parameters: list[cp.Parameter]
    variables: list[cp.Variable]
    n: int
    m: int
    n_classes: int
    gamma: float
    bound_parameters: list[cp.Parameter] = field(default_factory=list)


def build_problem(
    n: int, m: int, *, gamma: float = 0.05, n_classes: int = 0, param_bounds: bool = False
) -> BatchProblem:
    """Build the batch problem with ``n`` incoming and ``m`` existing columns.

    Args:
        n: Incoming points per batch (>= 2).
        m: Existing nearest neighbours per incoming point (>= 1).
        gamma: Weight of the strictly convex term (> 0; 0 gives an LP whose
            gradient is zero almost everywhere).
        n_classes: If > 0, add per-class quotas ``M @ u <= quota``.
        param_bounds: Write the zero lower bounds against a Parameter (see the
            module docstring); needed by the Moreau backend, harmless elsewhere.

    Raises:
        ConfigError: a size or ``gamma`` out of range.
    """
    if n < 2 or m < 1:
        raise ConfigError(f"Need a batch of n >= 2 and m >= 1 existing columns; got n={n}, m={m}.")
    if gamma < 0:
        raise ConfigError(f"gamma must be >= 0 (0 = pure LP, no gradient); got {gamma}.")
    dn = cp.Parameter((n, n), name="Dn")
    do = cp.Parameter((n, m), name="Do")
    c = cp.Parameter(n, name="c")
    ub = cp.Parameter(n, nonneg=True, name="ub")
    budget = cp.Parameter(nonneg=True, name="budget")
    zn = cp.Variable((n, n), name="Zn")
    zo = cp.Variable((n, m), name="Zo")
    u = cp.Variable(n, name="u")
    objective = cp.sum(cp.multiply(dn, zn)) + cp.sum(cp.multiply(do, zo)) + c @ u
    if gamma > 0:
        objective = objective + gamma * (cp.sum_squares(zn) + cp.sum_squares(zo) + cp.sum_squares(u))
    u_row = np.ones((n, 1)) @ cp.reshape(u, (1, n), order="C")  # (n, n): u[j] in every row
    bound_params = [cp.Parameter(name="lb")] if param_bounds else []
    lb = bound_params[0] if param_bounds else 0.0  # () scalar, broadcast to each bound
    constraints = [
        cp.sum(zn, axis=1) + cp.sum(zo, axis=1) == 1,
        zn >= lb,
        zn <= u_row,
        zo >= lb,
        u >= lb,
        u <= ub,
        cp.sum(u) <= budget,
    ]
    params = [dn, do, c, ub, budget]
    if n_classes > 0:
        onehot = cp.Parameter((n_classes, n), nonneg=True, name="M")
        quota = cp.Parameter(n_classes, nonneg=True, name="quota")
        constraints.append(onehot @ u <= quota)
        params += [onehot, quota]
    problem = cp.Problem(cp.Minimize(objective), constraints)
    if not problem.is_dpp():  # a bug here, not user input
        raise RuntimeError("HOST-CP batch problem is not DPP; cvxpylayers cannot differentiate it.")
    return BatchProblem(problem, params, [zn, zo, u], n, m, int(n_classes), float(gamma), bound_params)
