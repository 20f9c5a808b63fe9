"""Shift scenarios: a training pool that does not look like the user's clean target.

Each scenario draws a pool, a validation split and a test split from sklearn's digits
(standardised 64-d pixels). Validation and test come from the *target*; the pool is
what a scrape would give. Labels of the pool are flipped at ``noise`` after the pool is
built (near-duplicates share their original's given label, as copies of one scraped
item do). Nothing is downloaded.

- ``prior``: the pool's class prior is skewed (class shares from 100 down to 8
  percent of the classes' rows, in a random order of classes); validation and test are
  balanced.
- ``offtarget``: every class is split into 4 k-means clusters (writing styles); the
  target holds 2 of them per class, the pool all 4; as the target's rows go to
  validation and test, about three quarters of the pool are of styles the target never
  shows.
- ``region``: one region of pixel space (the 20 percent of points nearest a random
  point) is kept whole in the pool while the rest is kept at 25 percent, so the region
  is over-sampled 4 times; the target is uniform.
- ``duplicates``: 60 pool points are copied 12 times each with a small jitter (0.05
  of a pixel's sd): 40 percent of the pool are near-duplicates of a few items.
- ``none``: no shift (the pool is drawn like the target): the control.
"""

from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans
from sklearn.datasets import load_digits

from benchmarks._common import BenchData
from core.data.demos import flip_labels

__all__ = ["SCENARIOS", "shift_data"]

SCENARIOS = ("prior", "offtarget", "region", "duplicates", "none")


def shift_data(scenario: str, noise: float, seed: int) -> BenchData:
    """The pool (``x_train``), validation and test splits of ``scenario`` at ``noise`` for ``seed``."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; expected one of {SCENARIOS}")
    x, y = load_digits(return_X_y=True)
    x = x.astype(np.float64)
    rng = np.random.default_rng(seed)
    n, c = len(y), 10
    on_target = np.ones(n, dtype=bool)
    if scenario == "offtarget":
        for k in range(c):
            members = np.flatnonzero(y == k)
            lab = KMeans(4, n_init=3, random_state=seed).fit_predict(x[members])
            keep = rng.choice(4, 2, replace=False)
            on_target[members] = np.isin(lab, keep)
    # target rows (val, test) come only from on-target points; the pool from the rest
    perm = rng.permutation(n)
    target_rows = perm[on_target[perm]]
    m = len(target_rows)  # validation 15 % and test 25 % of all rows (offtarget: 30 / 40 % of the target's)
    if scenario == "offtarget":
        n_val, n_target = int(0.3 * m), int(0.7 * m)
    else:
        n_val, n_target = int(0.15 * n), int(0.4 * n)
    val, test = target_rows[:n_val], target_rows[n_val:n_target]
    if scenario == "offtarget":  # every off-target point and the on-target rest (~25 %)
        pool = np.setdiff1d(perm, target_rows[:n_target], assume_unique=False)
    else:
        pool = perm[n_target:]
    if scenario == "prior":
        share = np.linspace(1.0, 0.08, c)[rng.permutation(c)]
        pool = pool[rng.random(len(pool)) < share[y[pool]]]
    elif scenario == "region":
        centre = x[rng.choice(pool)]
        dist = np.linalg.norm(x[pool] - centre, axis=1)
        inside = dist <= np.quantile(dist, 0.2)
        pool = pool[inside | (rng.random(len(pool)) < 0.25)]
    pool = rng.permutation(pool)
    xp, yp = x[pool], y[pool]
    y_given = flip_labels(yp, rate=noise, n_classes=c, seed=1000 + seed)[0] if noise > 0 else yp.copy()
    if scenario == "duplicates":
        src = rng.choice(len(pool), 60, replace=False)
        reps = np.repeat(src, 12)
        jitter = rng.normal(scale=0.05 * (x.std(0) + 1e-6), size=(len(reps), x.shape[1]))
        xp = np.concatenate([xp, xp[reps] + jitter])
        yp, y_given = np.concatenate([yp, yp[reps]]), np.concatenate([y_given, y_given[reps]])
        order = rng.permutation(len(yp))
        xp, yp, y_given = xp[order], yp[order], y_given[order]
    mu, sd = xp.mean(0), xp.std(0) + 1e-6  # standardised on the pool only, as a user would
    z = lambda a: ((a - mu) / sd).astype(np.float32)  # noqa: E731
    name = f"digits {scenario} noise={noise:.0%} seed={seed}"
    return BenchData(name, z(xp), y_given.astype(np.int64), yp.astype(np.int64), z(x[val]),
                     y[val].astype(np.int64), z(x[test]), y[test].astype(np.int64), c)
