"""The convex batch problem and its differentiable layer: reference solve, budget, gradients."""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest
import torch

from core.errors import ConfigError
from core.selection.layer import SelectionLayer
from core.selection.problem import build_problem


def _instance(n: int, m: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    pts = rng.normal(size=(n, 2))
    ex = rng.normal(size=(m, 2))
    dn = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
    do = np.linalg.norm(pts[:, None] - ex[None], axis=-1)
    c = rng.uniform(0, 0.1, n)
    ub = np.ones(n)
    ub[0] = 0.0  # one point may not be opened
    return dn, do, c, ub


def test_problem_is_dpp_and_rejects_bad_sizes():
    assert build_problem(6, 3).problem.is_dpp()
    assert build_problem(6, 3, n_classes=2).problem.is_dpp()
    spec = build_problem(6, 3, n_classes=2, param_bounds=True)
    assert spec.problem.is_dpp() and [p.name() for p in spec.bound_parameters] == ["lb"]
    assert [p.name() for p in spec.parameters] == ["Dn", "Do", "c", "ub", "budget", "M", "quota"]
    with pytest.raises(ConfigError):
        build_problem(1, 3)
    with pytest.raises(ConfigError):
        build_problem(4, 2, gamma=-1.0)


def test_layer_matches_cvxpy_direct_solve_and_budget_holds():
    n, m, budget = 8, 3, 2.0
    dn, do, c, ub = _instance(n, m)
    spec = build_problem(n, m, gamma=0.05)
    for p, v in zip(spec.parameters, [dn, do, c, ub, budget], strict=True):
        p.value = v
    spec.problem.solve(solver=cp.CLARABEL)
    zn_ref, zo_ref, u_ref = (v.value for v in spec.variables)

    layer = SelectionLayer(n, m, gamma=0.05)
    t = [torch.tensor(a, dtype=torch.float64) for a in (dn, do, c, ub)] + [torch.tensor(budget)]
    zn, zo, u = layer(*t)
    np.testing.assert_allclose(u.numpy(), u_ref, atol=1e-4)
    np.testing.assert_allclose(zn.numpy(), zn_ref, atol=1e-4)
    np.testing.assert_allclose(zo.numpy(), zo_ref, atol=1e-4)
    assert u.sum().item() <= budget + 1e-5
    assert u[0].abs().item() < 1e-5  # ub = 0 is never opened
    rows = zn.sum(1) + zo.sum(1)
    np.testing.assert_allclose(rows.numpy(), 1.0, atol=1e-5)
    assert (zn <= u[None, :] + 1e-5).all()


def test_no_existing_set_uses_constant_columns_and_stays_feasible():
    n, m = 6, 2
    dn, _, c, ub = _instance(n, m, seed=1)
    layer = SelectionLayer(n, m)
    do = torch.full((n, m), 2.0, dtype=torch.float64)  # "missing" existing columns
    zn, zo, u = layer(torch.tensor(dn), do, torch.tensor(c), torch.zeros(n, dtype=torch.float64),
                      torch.tensor(2.0))
    # nothing may open: everyone falls back to the constant columns, still a valid solution
    np.testing.assert_allclose((zo.sum(1)).numpy(), 1.0, atol=1e-5)


def test_class_quota_constraint_holds():
    n, m = 8, 2
    dn, do, c, ub = _instance(n, m, seed=2)
    layer = SelectionLayer(n, m, n_classes=2)
    onehot = np.zeros((2, n))
    onehot[0, :4] = 1
    onehot[1, 4:] = 1
    _, _, u = layer(*[torch.tensor(a) for a in (dn, do, c, ub)], torch.tensor(4.0),
                    torch.tensor(onehot), torch.tensor([0.5, 3.0], dtype=torch.float64))
    assert u[:4].sum().item() <= 0.5 + 1e-5


def test_layer_gradcheck_double_precision():
    n, m = 4, 2
    dn, do, c, ub = _instance(n, m, seed=3)
    ub[:] = 1.0
    layer = SelectionLayer(n, m, gamma=0.1)
    dn_t = torch.tensor(dn, requires_grad=True)
    do_t = torch.tensor(do, requires_grad=True)
    c_t = torch.tensor(c, requires_grad=True)
    ub_t, b_t = torch.tensor(ub), torch.tensor(1.5, dtype=torch.float64)
    weights = torch.linspace(1.0, 2.0, n, dtype=torch.float64)

    def f(dn_, do_, c_):
        zn, zo, u = layer(dn_, do_, c_, ub_t, b_t)
        return (u * weights).sum() + (zo[:, 0] * weights).sum()

    assert torch.autograd.gradcheck(f, (dn_t, do_t, c_t), eps=1e-5, atol=1e-3, rtol=1e-2)


def test_gradient_is_not_zero_with_quadratic_term():
    n, m = 6, 2
    dn, do, c, ub = _instance(n, m, seed=4)
    layer = SelectionLayer(n, m, gamma=0.05)
    dn_t = torch.tensor(dn, requires_grad=True)
    _, _, u = layer(dn_t, torch.tensor(do), torch.tensor(c), torch.tensor(ub), torch.tensor(2.0))
    (u * torch.arange(n, dtype=torch.float64)).sum().backward()
    assert dn_t.grad.abs().sum().item() > 1e-6


def _args(n: int, m: int):
    dn, do, c, ub = _instance(n, m)
    return [torch.tensor(a) for a in (dn, do, c, ub)] + [torch.tensor(2.0, dtype=torch.float64)]


def test_a_solver_failure_is_retried_with_scs():
    from diffcp import SolverError

    n, m = 6, 2
    layer = SelectionLayer(n, m, solver="Clarabel")
    real, calls = layer._layer, []

    def flaky(*params, solver_args=None):
        calls.append((solver_args or {}).get("solve_method", "Clarabel"))
        if len(calls) == 1:
            raise SolverError("Clarabel gave up")
        return real(*params, solver_args=solver_args)

    layer._layer = flaky
    zn, zo, u = layer(*_args(n, m))
    assert calls == ["Clarabel", "SCS"] and torch.isfinite(u).all()


def test_a_non_finite_solution_counts_as_a_failure():
    n, m = 6, 2
    layer = SelectionLayer(n, m, solver="Clarabel")
    real, calls = layer._layer, []

    def nan_first(*params, solver_args=None):
        calls.append(solver_args)
        out = real(*params, solver_args=solver_args)
        return tuple(o * float("nan") for o in out) if len(calls) == 1 else out

    layer._layer = nan_first
    assert torch.isfinite(layer(*_args(n, m))[2]).all() and len(calls) == 2


@pytest.mark.parametrize("solver", ["moreau", "Clarabel"])
def test_a_bug_in_the_layer_is_not_hidden_by_a_retry(solver):
    n, m = 6, 2
    layer = SelectionLayer(n, m, solver=solver)
    calls = []

    def buggy(*params, solver_args=None):
        calls.append(solver_args)
        raise TypeError("a bug, not a hard batch")

    layer._layer = buggy
    with pytest.raises(TypeError, match="a bug"):
        layer(*_args(n, m))
    assert len(calls) == 1
