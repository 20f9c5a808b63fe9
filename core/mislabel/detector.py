"""detect_mislabels: combine out-of-fold, confident-learning and neighbourhood signals."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from core.errors import ConfigError
from core.mislabel.oof import (
    MAX_FIT_ROWS,
    OOF_MODELS,
    cleanlab_issues,
    compute_oof,
    present_classes,
    validate_inputs,
    validate_pred_probs,
)
from core.mislabel.signals import (
    knn_label_distribution,
    neighbours,
    representation_cost,
    reverse_knn_disagreement,
)

if TYPE_CHECKING:
    from core.cluster import Executor

__all__ = ["MislabelResult", "DetectorConfig", "detect_mislabels"]

logger = logging.getLogger(__name__)

#: Ways to estimate the share of wrong labels, which sets how many points are flagged.
NOISE_ESTIMATES = ("cleanlab", "cleanlab_posterior", "count", "count_posterior",
                   "argmax_posterior")


@dataclass(frozen=True)
class DetectorConfig:
    """Settings of :func:`detect_mislabels` (defaults chosen by ``benchmarks/mislabel.py``)."""

    knn_k: int = 20  # neighbours whose labels vote (forward kNN and the kNN posterior)
    rep_k: int = 20  # nearest points averaged in the representation cost
    reverse_k: int = 20  # neighbour lists searched for the reverse-kNN signal
    knn_weight: float = 0.5  # share of the kNN label distribution in the suggested-label posterior
    noise_estimate: str = "cleanlab_posterior"  # how the flag count is estimated (see _noise_rate)
    # most rows each out-of-fold model is fit on (None: all); below it nothing is sampled
    oof_max_rows: int | None = MAX_FIT_ROWS
    # out-of-fold model: "auto" blends logistic regression with trees where the first fold's
    # held-out log-loss says so (core.mislabel.oof); "logistic" alone is the detector before
    oof_model: str = "auto"
    # how fast the neighbourhood signals (and the kNN share of the posterior) lose weight when
    # the kNN vote predicts the given labels worse than the out-of-fold model: weight
    # min(1, acc_knn / acc_model) ** power; 0 keeps the plain mean of the four signals
    neighbour_power: float = 4.0

    def __post_init__(self) -> None:
        for name in ("knn_k", "rep_k", "reverse_k"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ConfigError(f"{name} must be a positive int; got {value!r}.")
        rows = self.oof_max_rows
        if rows is not None and (isinstance(rows, bool) or not isinstance(rows, int | np.integer)
                                 or rows < 2):
            raise ConfigError(f"oof_max_rows must be None (all rows) or an int of at least 2; got {rows!r}.")
        if self.oof_model not in OOF_MODELS:
            raise ConfigError(f"oof_model must be one of {', '.join(OOF_MODELS)}; got {self.oof_model!r}.")
        if not 0.0 <= self.neighbour_power <= 100.0:
            raise ConfigError(f"neighbour_power must be in [0, 100]; got {self.neighbour_power}.")
        if not 0.0 <= self.knn_weight <= 1.0:
            raise ConfigError(f"knn_weight must be in [0, 1]; got {self.knn_weight}.")
        if self.noise_estimate not in NOISE_ESTIMATES:
            raise ConfigError(
                f"noise_estimate must be one of {', '.join(NOISE_ESTIMATES)}; "
                f"got {self.noise_estimate!r}."
            )


@dataclass(frozen=True)
class MislabelResult:
    """What :func:`detect_mislabels` found, one entry per example.

    Attributes:
        score: ``(N,)`` in [0, 1]; higher = more likely mislabelled.
        flagged: ``(N,)`` bool, ``score >= threshold``.
        suggested_label: ``(N,)`` int64, most probable class (equals the given label when
            that is the most probable one).
        suggested_confidence: ``(N,)`` posterior probability of ``suggested_label``.
        noise_rate: Estimated share of wrong labels in the data.
        threshold: Score at or above which a point is flagged.
        signals: Name -> ``(N,)`` suspicion in [0, 1] of each signal averaged into ``score``.
        weights: Name -> weight of that signal in ``score`` (they sum to 1).
    """

    score: np.ndarray
    flagged: np.ndarray
    suggested_label: np.ndarray
    suggested_confidence: np.ndarray
    noise_rate: float
    threshold: float
    signals: dict[str, np.ndarray] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)


def neighbour_trust(y: np.ndarray, proba: np.ndarray, p_knn: np.ndarray, power: float) -> float:
    """Weight in [0, 1] of the neighbourhood signals relative to the out-of-fold model.

    Both ``proba`` and the kNN vote ``p_knn`` predict each point's label without seeing it,
    so their accuracies on the *given* labels compare them honestly (label noise lowers both
    alike; nothing here knows which labels are wrong). Where Euclidean neighbours are as good
    as the model (digits, the mixture: within a point of each other) the trust is 1 and the
    score is the plain mean of the four signals, as tuned; where irrelevant coordinates drown
    the neighbours (``nonlinear_classes``: kNN right half as often as the trees) it falls to
    ``(acc_knn / acc_model) ** power``, about 0.03-0.1 there.
    """
    acc_model = float((proba.argmax(1) == y).mean())
    acc_knn = float((p_knn.argmax(1) == y).mean())
    if acc_model <= 0.0:
        return 1.0
    return float(min(1.0, acc_knn / acc_model) ** power)


def _noise_rate(method: str, y: np.ndarray, proba: np.ndarray, posterior: np.ndarray) -> float:
    if method == "cleanlab":
        return float(cleanlab_issues(y, proba).mean())
    if method == "cleanlab_posterior":
        return float(cleanlab_issues(y, posterior).mean())
    if method in ("count", "count_posterior"):
        from cleanlab.count import num_label_issues

        yy, p = present_classes(y, proba if method == "count" else posterior)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(num_label_issues(yy, p)) / len(y)
    if method == "argmax_posterior":
        return float((posterior.argmax(1) != y).mean())
    raise ConfigError(f"Unknown noise_estimate {method!r}.")


def detect_mislabels(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    n_classes: int,
    seed: int = 0,
    folds: int = 5,
    threshold: float | None = None,
    pred_probs: np.ndarray | None = None,
    config: DetectorConfig | None = None,
    executor: Executor | None = None,
) -> MislabelResult:
    """Score every point for being mislabelled, flag the likely ones and suggest a label.

    The signals and how they are combined are described in :mod:`core.mislabel`.

    Args:
        features: ``(N, D)`` embeddings (the same space the user selects in).
        labels: ``(N,)`` given labels in ``[0, n_classes)``.
        n_classes: Number of classes (some may have no examples).
        seed: Seed of the out-of-fold model and its folds.
        folds: Stratified folds of the out-of-fold model.
        threshold: Flag points with ``score >= threshold``; ``None`` flags the
            ``round(noise_rate * N)`` highest scores.
        pred_probs: ``(N, n_classes)`` out-of-fold probabilities already computed
            (e.g. by :func:`~core.mislabel.out_of_fold_proba`), or ``None``.
        config: Neighbourhood sizes and the noise-rate estimate; defaults when ``None``.
        executor: Where the out-of-fold fits run (:mod:`core.cluster`), one piece per fit;
            ``None``: in this process. The neighbourhood signals always run here. The same
            seed gives the same result either way.

    Returns:
        A :class:`MislabelResult`.

    Raises:
        DataError: wrong shapes, labels out of range, one class only, NaN features, or
            ``pred_probs`` that are not an ``(N, n_classes)`` probability matrix.
        ConfigError: ``n_classes`` or ``folds`` below 2, ``threshold`` outside [0, 1].
    """
    cfg = config or DetectorConfig()
    x, y = validate_inputs(features, labels, n_classes, folds)
    if threshold is not None and not (0.0 <= float(threshold) <= 1.0):
        raise ConfigError(f"threshold must be in [0, 1] (scores are); got {threshold}.")
    n = len(y)
    rows = np.arange(n)
    if pred_probs is None:
        proba = compute_oof(x, y, n_classes, folds, seed, max_fit_rows=cfg.oof_max_rows,
                            executor=executor, model=cfg.oof_model)
    else:
        proba = validate_pred_probs(pred_probs, n, n_classes)
    k = max(cfg.knn_k, cfg.rep_k, cfg.reverse_k)
    nb = neighbours(x, k)
    p_knn = knn_label_distribution(nb, y, n_classes, cfg.knn_k)
    signals = {
        "self_confidence": 1.0 - proba[rows, y],
        "knn": 1.0 - p_knn[rows, y],
        "representation": representation_cost(x, y, nb, cfg.rep_k),
    }
    signals["reverse_knn"] = reverse_knn_disagreement(nb, y, cfg.reverse_k, signals["knn"])
    trust = neighbour_trust(y, proba, p_knn, cfg.neighbour_power)
    raw = {name: (1.0 if name == "self_confidence" else trust) for name in signals}
    weights = {name: w / sum(raw.values()) for name, w in raw.items()}
    score = np.clip(sum(weights[name] * sig for name, sig in signals.items()), 0.0, 1.0)
    knn_weight = cfg.knn_weight * trust
    posterior = (1 - knn_weight) * proba + knn_weight * p_knn
    noise_rate = _noise_rate(cfg.noise_estimate, y, proba, posterior)
    if threshold is None:
        n_flag = int(round(noise_rate * n))
        if n_flag == 0:
            threshold = float(np.nextafter(score.max(), np.inf))
        else:
            threshold = float(np.sort(score)[::-1][n_flag - 1])
    flagged = score >= threshold
    suggested = posterior.argmax(1).astype(np.int64)
    logger.info("mislabel detection: noise rate %.3f, %d of %d flagged, neighbour trust %.3f",
                noise_rate, int(flagged.sum()), n, trust)
    return MislabelResult(
        score=score,
        flagged=flagged,
        suggested_label=suggested,
        suggested_confidence=posterior[rows, suggested],
        noise_rate=noise_rate,
        threshold=float(threshold),
        signals=signals,
        weights=weights,
    )
