"""The layer's backends: Moreau pinned against Clarabel, batched solves, parameterised bounds, fallbacks.

Tolerances (measured on these seeded instances, n=16 m=4 3 classes, with a margin of about 5x):
solutions within ``SOLUTION_ATOL``; gradients within ``GRAD_RTOL`` per problem, except on at
most one problem in six. The solution map of a strictly convex QP is piecewise affine in
``(Dn, Do, c)``; a problem within ~1e-4 of a kink gets a different one-sided derivative from
each interior-point solver (checked by finite differences: each matches one side), which no
tolerance makes equal.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

import core.selection.layer as layer_mod
from core.errors import ConfigError
from core.selection.layer import BOUND_TOL, DEFAULT_SOLVER, SOLVERS, SelectionLayer
from core.selection.problem import build_problem

N, M, C = 16, 4, 3
SOLUTION_ATOL = 5e-4  # measured: max |diff| of u, Zn, Zo 1.1e-4
GRAD_RTOL = 2e-3  # measured: at most 3.1e-4 away from kinks
KINKS_ALLOWED = 1 / 6  # measured: 1 kink in 42 problems (median difference 1.2e-4)


def _instances(count: int, seed: int, n: int = N, m: int = M, classes: int = C) -> list[torch.Tensor]:
    """Selector-like problems stacked along a leading dimension: ``[Dn, Do, c, ub, budget, M, quota]``."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(classes, 8)) * 1.5
    out: list[list[np.ndarray]] = [[] for _ in range(7)]
    for _ in range(count):
        y = rng.integers(0, classes, n)
        pts = centers[y] + rng.normal(size=(n, 8))
        dn = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
        scale = dn.sum() / (n * (n - 1))  # mean off-diagonal distance 1, as the selector scales
        dn /= scale
        k = int(rng.integers(0, m + 1))  # existing points so far; the rest of Do at the missing cost
        do = np.full((n, m), 2.0)
        ex = centers[rng.integers(0, classes, 16)] + rng.normal(size=(16, 8))
        if k:
            do[:, :k] = np.sort(np.linalg.norm(pts[:, None] - ex[None], axis=-1) / scale, axis=1)[:, :k]
        c = rng.uniform(0.0, 0.05, n)
        ub = (rng.random(n) >= 0.1).astype(float)  # ~10 % flagged: may not open
        budget = rng.uniform(0.08, 0.12) * n
        onehot = np.zeros((classes, n))
        onehot[y, np.arange(n)] = 1.0
        quota = np.ceil(budget * onehot.sum(1) / n) + 0.5 * rng.random(classes)
        for lst, v in zip(out, (dn, do, c, ub, np.array(budget), onehot, quota), strict=True):
            lst.append(v)
    return [torch.tensor(np.stack(v)) for v in out]


def _solve_with_grad(layer: SelectionLayer, params: list[torch.Tensor], seed: int):
    """Solution and the gradient of a random linear functional of ``(u, Zn)`` w.r.t. ``(Dn, Do, c)``."""
    leaves = [p.clone().requires_grad_(i < 3) for i, p in enumerate(params)]
    zn, zo, u = layer(*leaves)
    g = torch.Generator().manual_seed(seed)
    wu = torch.randn(u.shape, generator=g, dtype=torch.float64)
    wz = torch.randn(zn.shape, generator=g, dtype=torch.float64)
    ((u * wu).sum() + (zn * wz).sum()).backward()
    lead = u.shape[:-1]
    grad = torch.cat([leaves[i].grad.reshape(*lead, -1) for i in range(3)], dim=-1)
    return (zn.detach(), zo.detach(), u.detach()), grad


@pytest.fixture(scope="module")
def pair() -> dict[str, SelectionLayer]:
    return {s: SelectionLayer(N, M, n_classes=C, solver=s) for s in ("moreau", "Clarabel")}


def _assert_grads_agree(grad: torch.Tensor, ref: torch.Tensor) -> None:
    rel = ((grad - ref).norm(dim=-1) / ref.norm(dim=-1)).reshape(-1)
    off = int((rel > GRAD_RTOL).sum())
    assert off <= KINKS_ALLOWED * len(rel), f"relative gradient differences {rel.numpy().round(5)}"
    assert float(rel.median()) < GRAD_RTOL / 4


def test_default_solver_is_a_known_backend():
    assert DEFAULT_SOLVER in SOLVERS and SelectionLayer(4, 2).solver == DEFAULT_SOLVER
    with pytest.raises(ConfigError, match="Unknown solver"):
        SelectionLayer(4, 2, solver="ECOS")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_moreau_matches_clarabel_batched(pair, seed):
    params = _instances(12, seed)
    (zn, zo, u), grad = _solve_with_grad(pair["moreau"], params, seed)
    (zn_r, zo_r, u_r), grad_r = _solve_with_grad(pair["Clarabel"], params, seed)
    assert u.shape == (12, N) and zn.shape == (12, N, N) and zo.shape == (12, N, M)
    for a, b in ((u, u_r), (zn, zn_r), (zo, zo_r)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=SOLUTION_ATOL)
    _assert_grads_agree(grad, grad_r)
    assert pair["moreau"].fallbacks == {}  # Moreau solved these itself


def test_moreau_matches_clarabel_unbatched(pair):
    params = _instances(6, 3)
    grads, refs = [], []
    for k in range(6):
        one = [p[k] for p in params]
        (zn, zo, u), grad = _solve_with_grad(pair["moreau"], one, k)
        (zn_r, zo_r, u_r), grad_r = _solve_with_grad(pair["Clarabel"], one, k)
        assert u.shape == (N,) and zn.shape == (N, N)
        np.testing.assert_allclose(u.numpy(), u_r.numpy(), atol=SOLUTION_ATOL)
        np.testing.assert_allclose(zn.numpy(), zn_r.numpy(), atol=SOLUTION_ATOL)
        grads.append(grad)
        refs.append(grad_r)
    _assert_grads_agree(torch.stack(grads), torch.stack(refs))


@pytest.mark.parametrize("solver", SOLVERS)
def test_a_batched_call_solves_each_problem_as_alone_and_keeps_gradients_apart(solver):
    n, m, b = 6, 2, 3
    layer = SelectionLayer(n, m, n_classes=2, solver=solver)
    params = _instances(b, 7, n=n, m=m, classes=2)
    params[4] = params[4][0]  # an input without the batch dimension is shared by every problem
    leaves = [p.clone().requires_grad_(i < 3) for i, p in enumerate(params)]
    zn, zo, u = layer(*leaves)
    assert u.shape == (b, n) and zn.shape == (b, n, n) and zo.shape == (b, n, m)
    w = torch.linspace(1.0, 2.0, n, dtype=torch.float64)  # sum(u) alone sits at the budget: no gradient
    (u[1] * w).sum().backward()  # a functional of problem 1 alone
    assert leaves[0].grad[[0, 2]].abs().max() == 0 and leaves[0].grad[1].abs().sum() > 1e-6
    for k in range(b):
        one = [p[k].clone().requires_grad_(i < 3) if i != 4 else p for i, p in enumerate(params)]
        zn1, zo1, u1 = layer(*one)
        np.testing.assert_allclose(u[k].detach().numpy(), u1.detach().numpy(), atol=1e-8)
        np.testing.assert_allclose(zo[k].detach().numpy(), zo1.detach().numpy(), atol=1e-8)
        if k == 1:
            (u1 * w).sum().backward()
            np.testing.assert_allclose(leaves[0].grad[1].numpy(), one[0].grad.numpy(), rtol=1e-6, atol=1e-9)


def test_parameterised_bounds_are_enforced_by_moreau(pair):
    zn, zo, u = pair["moreau"](*_instances(16, 11))
    assert min(float(t.min()) for t in (zn, zo, u)) >= -BOUND_TOL
    rows = zn.sum(-1) + zo.sum(-1)
    np.testing.assert_allclose(rows.numpy(), 1.0, atol=1e-6)  # every point still represented


def test_lost_constant_bounds_are_caught_when_the_layer_is_built():
    # cvxpy moves "x >= 0" rows into direct cones that cvxpylayers' Moreau interface drops;
    # the constant-bound problem shows it, and the build-time guard refuses such a layer.
    spec = build_problem(6, 2)
    with pytest.raises(RuntimeError, match="lost constraint rows"):
        layer_mod._check_no_rows_dropped(layer_mod._cvxpy_layer(spec, "moreau"), spec)


def _break_moreau(layer: SelectionLayer, how: str, monkeypatch) -> list[str]:
    """Make the Moreau solve fail in one of the ways the layer must catch; returns the call log."""
    real, calls = layer._layer, []

    def broken(*params, solver_args=None):
        calls.append("moreau")
        if how == "raise":
            raise layer_mod.SolverError("moreau gave up")
        zn, zo, u = real(*params, solver_args=solver_args)
        if how == "nan":
            return zn, zo, u * float("nan")
        if how == "negative":  # what the dropped bounds looked like
            return zn, zo, u - 1e-3
        return zn, zo, u

    layer._layer = broken
    if how == "status":
        monkeypatch.setattr(layer_mod, "_moreau_statuses", lambda ctx: ["Solved", "MaxIterations"])
    return calls


@pytest.mark.parametrize("how", ["raise", "nan", "negative", "status"])
def test_a_moreau_failure_falls_back_to_clarabel(pair, how, monkeypatch, caplog):
    layer = SelectionLayer(N, M, n_classes=C, solver="moreau")
    calls = _break_moreau(layer, how, monkeypatch)
    params = _instances(2, 5)
    with caplog.at_level(logging.WARNING, logger="core.selection.layer"):
        (zn, zo, u), grad = _solve_with_grad(layer, params, 0)
        layer(*params)
    (zn_r, zo_r, u_r), grad_r = _solve_with_grad(pair["Clarabel"], params, 0)
    np.testing.assert_allclose(u.numpy(), u_r.numpy(), atol=1e-9)  # Clarabel's own answer
    np.testing.assert_allclose(grad.numpy(), grad_r.numpy(), rtol=1e-6, atol=1e-9)
    assert calls == ["moreau", "moreau"] and layer.fallbacks == {"moreau": 2}
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1  # warned once


def test_moreau_then_clarabel_failing_ends_with_scs(monkeypatch):
    layer = SelectionLayer(6, 2, solver="moreau")
    calls = _break_moreau(layer, "raise", monkeypatch)
    diffcp, _ = layer._backend("Clarabel")

    def clarabel_fails(*params, solver_args=None):
        method = (solver_args or {}).get("solve_method", "Clarabel")
        calls.append(method)
        if method == "Clarabel":
            raise layer_mod.SolverError("Clarabel gave up")
        return diffcp(*params, solver_args=solver_args)

    layer._diffcp = clarabel_fails
    params = [p[0] for p in _instances(1, 2, n=6, m=2)][:5]
    zn, zo, u = layer(*params)
    assert calls == ["moreau", "Clarabel", "SCS"] and torch.isfinite(u).all()
    assert float(u.min()) > -1e-4 and layer.fallbacks == {"moreau": 1, "Clarabel": 1}
