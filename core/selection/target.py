"""The user's target, seen through the validation set: is the pool shifted from it, and by how much.

HOST-CP's value is defined by a clean validation set. Where that set is drawn like the
pool (a held-out share of the same file), covering the pool is covering the target and
the read-out needs nothing more. Where it is not (a scraped pool and a small clean
in-domain set, the common case in curation), the subset should represent the target:

- **class prior**: the class quotas follow the validation set's class shares instead of
  the pool's class sizes (shrunk towards the pool's by one pseudo-count per class, so that a
  class a small validation set happens to miss is not dropped from the subset);
- **covariates**: each pool point counts, as a point to be represented, with its density
  ratio ``p_target(x) / p_pool(x)``, estimated by its ``k`` nearest neighbours among pool
  and validation points together (a neighbour-count domain classifier: it sees clusters,
  regions and near-duplicates that a linear one misses), plus the mass of the validation
  points whose nearest pool point of their class it is (so target points far from any
  dense pool region still pull the set towards them).

Both are switched on only when a test says the pool and the validation set differ (the
weights only when the covariate test does: where the prior test alone fires, often a small
validation set, the ratios are estimates that test could not tell from 1):
a chi-square test of the validation labels against the pool's class shares, and a
permutation test of the neighbour classifier's AUROC (labels of "pool" and "validation"
shuffled over the same neighbour graph). Without a detected shift the run is the one it
was before (rows count alike, quotas by class sizes), so data drawn from one
distribution loses nothing. Measured on ``benchmarks/shift.py`` (README, "Under
distribution shift").
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from core.knn import knn

__all__ = ["SHIFT_ALPHA", "TargetShift", "detect_shift", "no_shift", "sample_rows", "target_shares"]

logger = logging.getLogger(__name__)

#: A shift is declared below this p-value (of either test). Both tests are run on every
#: task, so the false-alarm rate on unshifted data is at most about twice this.
SHIFT_ALPHA = 0.01
#: Neighbours of the domain classifier: enough that a validation share of 10-20 percent
#: gives a few validation neighbours per point, few enough to see a cluster of 30 points.
NEIGHBOURS = 30
#: Permutations of the AUROC test (the smallest p-value it can give is 1 / (this + 1)).
PERMUTATIONS = 200
#: The neighbour graph holds at most this many pool and this many validation points (a random
#: sample of each above it): the test's cost stops growing with the data (a million points would be
#: a kNN search over all of them, minutes); the weights of every pool point, needed only when a shift
#: is found, come from its neighbours among those samples.
REFERENCE = 20_000
#: Share of the objective held by the validation points themselves (their mass, moved onto their
#: nearest pool points); the rest is the pool reweighted by its density ratio. Tuning draws 0-2
#: (36 cells, noise 0 and 20 %): 0.5 gave 89.8, 0.25 89.5, 0 88.2 (README, "Under distribution shift").
VAL_SHARE = 0.5
#: A validation point's mass is shared equally by this many nearest pool points of its class.
#: Tuning draws 0-2 of ``benchmarks/shift.py`` (noise 0, 12 cells): 1 gave 90.8, 5 90.6, 15 89.6;
#: spreading did not help the near-duplicate cells it was meant for (92.8 at 10 % with 1 and 5).
ATTACH_NEIGHBOURS = 1
#: Weights are clipped to this multiple of their mean, then brought back to mean 1 (so the largest
#: can end somewhat above it): a handful of points must not own the objective.
MAX_WEIGHT = 20.0
#: The prior test uses the chi-square distribution only where every expected count is at least this
#: (the textbook rule); below it, :data:`PRIOR_DRAWS` multinomial draws.
MIN_EXPECTED = 5.0
PRIOR_DRAWS = 2000
#: The target's class shares are the validation counts plus this many pseudo-counts per class
#: spread at the pool's shares (a Dirichlet prior centred on the pool): a class that a small
#: validation set happens to miss keeps part of its pool share instead of a quota of 0 (20
#: validation points, 10 classes: a third of it), while a large validation set decides alone.
SHARE_PSEUDOCOUNTS = 1.0


@dataclass(frozen=True)
class TargetShift:
    """What the validation set says about the pool, and what the read-out makes of it."""

    detected: bool
    weights: np.ndarray | None  # (N,) row weights of the pool (mean 1); None when no shift
    shares: np.ndarray | None  # (C,) validation class shares for the quotas; None when no shift
    auroc: float  # the neighbour classifier's AUROC, validation against pool (0.5: alike)
    p_covariate: float  # permutation p-value of that AUROC
    p_prior: float  # chi-square p-value of the validation labels against the pool's class shares

    @property
    def note(self) -> str:
        """One line for the run's info: what was found and what the read-out did."""
        if np.isnan(self.auroc):
            return "target=off: the set represents the pool (pool and validation set not compared)"
        found = (f"neighbour AUROC {self.auroc:.3f} (p={self.p_covariate:.3g}), class prior "
                 f"p={self.p_prior:.3g}")
        if self.shares is None:
            return f"no shift between pool and validation set ({found}): the set represents the pool"
        if self.weights is None:
            return (f"shift detected between pool and validation set ({found}), in the class prior "
                    "only: quotas by the validation set's class shares, points count alike")
        why = "shift detected" if self.detected else "target=on (no shift detected)"
        return (f"{why} between pool and validation set ({found}): the set represents the "
                "validation set's distribution (quotas by its class shares, points weighted by "
                "density ratio)")

    def info(self) -> dict:
        """The run-info fields."""
        def num(v: float) -> float | None:  # JSON has no NaN: an unchecked value is null
            return None if np.isnan(v) else round(float(v), 6)

        return {"target": self.note, "shift_detected": self.detected, "shift_auroc": num(self.auroc),
                "shift_p_covariate": num(self.p_covariate), "shift_p_prior": num(self.p_prior)}


def no_shift() -> TargetShift:
    """The answer when the check is off (``HostCPConfig.target="off"``)."""
    return TargetShift(False, None, None, float("nan"), float("nan"), float("nan"))


def detect_shift(
    x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, n_classes: int, *,
    allowed: np.ndarray | None = None, seed: int = 0, force: bool = False,
) -> TargetShift:
    """Test whether the pool ``(x, y)`` and the validation set differ; weights and shares if so.

    Args:
        x, y: ``(N, D)`` pool embeddings and given labels (possibly noisy).
        x_val, y_val: ``(M, D)`` clean validation embeddings and labels.
        n_classes: Number of classes.
        allowed: ``(N,)`` the points that may be chosen; a validation point's mass goes to the
            nearest of them in its class (``None``: every point).
        seed: Seed of the permutations and of the test's pool sample.
        force: Weights and shares even when no test fires (``target="on"``).
    """
    rng = np.random.default_rng(seed)
    n, m = len(y), len(y_val)
    pool_counts = np.bincount(y, minlength=n_classes).astype(float)
    val_counts = np.bincount(y_val, minlength=n_classes).astype(float)
    p_prior = _prior_test(val_counts, pool_counts, seed)
    # every point, up to REFERENCE of each
    pool_ref, val_ref = sample_rows(n, REFERENCE, rng), sample_rows(m, REFERENCE, rng)
    n_ref, m_ref = len(pool_ref), len(val_ref)
    ref = np.concatenate([np.asarray(x[pool_ref], dtype=np.float32),
                          np.asarray(x_val[val_ref], dtype=np.float32)])
    k = max(1, min(NEIGHBOURS, n_ref + m_ref - 1))
    idx = np.asarray(knn(ref, k)[1])  # (n_ref + m_ref, k) indices into ref
    src = np.r_[np.zeros(n_ref, dtype=bool), np.ones(m_ref, dtype=bool)]
    auroc, p_cov = _auroc_test(idx, src, rng)
    detected = min(p_prior, p_cov) < SHIFT_ALPHA
    if not (detected or force):
        return TargetShift(False, None, None, auroc, p_cov, p_prior)
    if p_cov >= SHIFT_ALPHA and not force:  # the prior alone: density ratios the test could not tell
        return TargetShift(True, None, target_shares(val_counts, pool_counts), auroc, p_cov, p_prior)
    v = _validation_neighbours(x, ref, idx, pool_ref, src, k)
    # k pseudo-neighbours at the base rate, as many as the real ones: a ratio read off a few
    # neighbours is shrunk halfway to 1 (a sharper estimate, a fifth of them, was no better)
    prior_v, prior_p = k * m_ref / (n_ref + m_ref), k * n_ref / (n_ref + m_ref)
    ratio = (v + prior_v) / (k - v + prior_p) * (n_ref / max(m_ref, 1))
    allowed = np.ones(n, dtype=bool) if allowed is None else np.asarray(allowed, dtype=bool)
    weights = _attach(ratio, x, y, x_val, y_val, n_classes, allowed)
    weights = np.minimum(weights / weights.mean(), MAX_WEIGHT)
    return TargetShift(detected, weights / weights.mean(), target_shares(val_counts, pool_counts), auroc,
                       p_cov, p_prior)


def target_shares(val_counts: np.ndarray, pool_counts: np.ndarray) -> np.ndarray:
    """``(C,)`` class shares of the target: validation counts shrunk towards the pool's shares.

    ``(v_c + a p_c) / (M + a)`` with ``a = SHARE_PSEUDOCOUNTS * C`` pseudo-counts at the pool's
    shares ``p_c``: the posterior mean under a Dirichlet prior centred on the pool.
    """
    val_counts, pool_counts = np.asarray(val_counts, dtype=float), np.asarray(pool_counts, dtype=float)
    a = SHARE_PSEUDOCOUNTS * len(val_counts)
    pool_shares = pool_counts / max(pool_counts.sum(), 1.0)
    return (val_counts + a * pool_shares) / (val_counts.sum() + a)


def sample_rows(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """All ``n`` indices, or a sorted random sample of ``size`` of them (no draw when all fit)."""
    return np.arange(n) if n <= size else np.sort(rng.choice(n, size, replace=False))


def _prior_test(val_counts: np.ndarray, pool_counts: np.ndarray, seed: int) -> float:
    """p-value of the validation class counts under the pool's class shares (chi-square statistic).

    The chi-square distribution is used where every expected count is at least
    :data:`MIN_EXPECTED`; below that (small validation sets, rare classes) it gives too many
    false alarms (1.8 % at alpha 1 % in 1,000 seeded draws of 20 points, 10 classes, an
    imbalanced prior; these draws give 1.1 %: the test), so the p-value is the share of
    :data:`PRIOR_DRAWS` seeded multinomial draws at the pool's shares whose statistic is at
    least the observed one. Validation classes the pool lacks: 0 (the prior differs for sure).
    """
    from scipy.stats import chi2

    present = pool_counts > 0
    m = val_counts.sum()
    if val_counts[~present].sum() > 0:  # the target has classes the pool lacks
        return 0.0
    if present.sum() < 2 or m == 0:
        return 1.0
    shares = pool_counts[present] / pool_counts[present].sum()
    expected = shares * m

    def stat(counts: np.ndarray) -> np.ndarray:
        return ((counts - expected) ** 2 / expected).sum(axis=-1)

    observed = float(stat(val_counts[present]))
    if expected.min() >= MIN_EXPECTED:
        return float(chi2.sf(observed, present.sum() - 1))
    draws = np.random.default_rng([seed, 1]).multinomial(int(m), shares, size=PRIOR_DRAWS)
    return float((1 + np.sum(stat(draws) >= observed - 1e-9)) / (PRIOR_DRAWS + 1))


def _validation_neighbours(
    x: np.ndarray, ref: np.ndarray, idx: np.ndarray, pool_ref: np.ndarray, src: np.ndarray, k: int
) -> np.ndarray:
    """``(N,)`` validation points among each pool point's ``k`` nearest reference points (not itself).

    When the whole pool is in the reference (``pool_ref`` is every index) the neighbours are
    the graph's own rows; otherwise every pool point queries the reference for ``k + 1``
    neighbours and drops itself where it is one of the sampled points, else its farthest,
    block by block (memory O(block * k), not O(N * k)).
    """
    n = len(x)
    if len(pool_ref) == n:
        return src[idx[:n]].sum(axis=1).astype(float)
    at = np.full(n, -1, dtype=np.int64)  # each pool point's row in the reference, -1 if not sampled
    at[pool_ref] = np.arange(len(pool_ref))
    v = np.empty(n, dtype=float)
    for s in range(0, n, REFERENCE):  # blocks keep the (block, k + 1) answers small
        rows = np.arange(s, min(s + REFERENCE, n))
        got = np.asarray(knn(ref, k + 1, queries=np.asarray(x[rows], dtype=np.float32))[1])
        own = got == at[rows, None]
        keep = ~own
        keep[~own.any(axis=1), -1] = False  # not sampled (or not found): drop the farthest
        v[rows] = src[got[keep].reshape(len(rows), k)].sum(axis=1)
    return v


def _auroc_test(idx: np.ndarray, src: np.ndarray, rng: np.random.Generator) -> tuple[float, float]:
    """AUROC of "validation neighbours among k" for validation against pool, and its permutation p-value.

    The neighbour graph stays fixed and the labels are shuffled, so the null distribution
    carries the graph's own structure (duplicates, hubs).
    """
    n_val = int(src.sum())
    if n_val == 0 or n_val == len(src):
        return 0.5, 1.0
    observed = _auc(src[idx].sum(axis=1), src)
    null = np.empty(PERMUTATIONS)
    for t in range(PERMUTATIONS):
        perm = rng.permutation(src)
        null[t] = _auc(perm[idx].sum(axis=1), perm)
    p = float((1 + np.sum(null >= observed)) / (PERMUTATIONS + 1))
    return float(observed), p


def _auc(score: np.ndarray, positive: np.ndarray) -> float:
    """Mann-Whitney AUROC with ties counted half (integer scores: many ties)."""
    from scipy.stats import rankdata

    ranks = rankdata(score)
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / max(n_pos * n_neg, 1))


def _attach(
    ratio: np.ndarray, x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, n_classes: int,
    allowed: np.ndarray,
) -> np.ndarray:
    """Density-ratio weights plus each validation point's share of its class mass on its nearest pool point.

    A validation point of class ``c`` adds ``sum_{i in c} ratio_i / M_c`` (its class's
    weighted pool mass over the class's ``M_c`` validation points) to the nearest pool point
    given label ``c``: half the objective is the pool reweighted, half the validation set
    itself, both in the pool's units. Where that mass would pass half the clip
    (:data:`MAX_WEIGHT` times the mean weight), as when the pool is many times the
    validation set, it is shared among as many nearest pool points as keep it below, so
    the clip does not remove the validation half (a million pool points against a thousand
    validation ones would keep a tenth of it).
    """
    w = ratio.astype(np.float64).copy()
    cap = MAX_WEIGHT * ratio.mean() / (1.0 - VAL_SHARE)  # the clip, in ratio units
    for c in range(n_classes):
        members, targets = np.flatnonzero((y == c) & allowed), np.flatnonzero(y_val == c)
        if len(members) == 0 or len(targets) == 0:
            continue
        mass = VAL_SHARE / (1.0 - VAL_SHARE) * ratio[y == c].sum() / len(targets)
        kk = min(max(ATTACH_NEIGHBOURS, math.ceil(mass / (cap / 2))), len(members))
        _, near = knn(np.asarray(x[members], dtype=np.float32), kk,
                      queries=np.asarray(x_val[targets], dtype=np.float32))
        np.add.at(w, members[np.asarray(near).ravel()], mass / kk)
    return w
