"""Mislabel detection: which training labels are probably wrong, and what they should be.

How :func:`detect_mislabels` scores a point ``i`` with given label ``y_i`` (every
signal is a suspicion in [0, 1], higher = more likely mislabelled, and none
lets a point vote for itself):

1. ``self_confidence``: ``1 - p_i[y_i]`` where ``p_i`` are *out-of-fold*
   class probabilities (:func:`out_of_fold_proba`: logistic regression on
   standardised embeddings, stratified K folds, so the model that scores a
   point never saw its label; above ``DetectorConfig.oof_max_rows`` training
   rows a fold's model is fit on a weighted stratified sample of them, which
   keeps a million points to about half a minute). By default
   (``oof_model="auto"``) they are blended with the probabilities of extremely
   randomised trees on the same folds (:mod:`core.mislabel.trees`), with the
   trees' weight chosen by held-out log-loss on the first fold: this is what
   follows classes that are unions of clusters or concentric shells. This is
   cleanlab's default label quality score.
2. ``knn``: share of the ``k`` nearest neighbours (embedding, Euclidean,
   self excluded by index) whose label differs from ``y_i``.
3. ``representation``: HOST-CP's cost of representing ``i`` under a
   label-aware distance, ``1 - d_any / d_same``, with ``d_same`` the mean
   distance to the nearest points of its own label and ``d_any`` to the
   nearest points of any label. A point whose label is an island inside
   another class is expensive to represent by its own class.
4. ``reverse_knn``: among the points that have ``i`` as one of their
   neighbours, the share with another label (shrunk towards ``knn`` when few).

``score`` is the mean of the four, the three neighbourhood signals weighted by
their *trust* ``min(1, acc_knn / acc_model) ** 4`` (:func:`~core.mislabel.detector.neighbour_trust`:
how often the kNN vote and the out-of-fold model predict the given labels, both
without seeing the point). Where neighbours are as good as the model (digits,
the mixture) the trust is 1 and the score is the plain mean, which there beat
each signal alone, a rank average, cleanlab alone, Data-OOB and KNN-Shapley in
AUROC; where irrelevant coordinates drown Euclidean neighbours
(:func:`core.data.demos.nonlinear_classes`) the trust is about 0.03-0.1 and the
out-of-fold signal carries the score. Adding Data-OOB as a fifth signal helped
digits slightly and hurt the mixture, so it is left out.

How many points are flagged comes from an *estimate of the noise rate*:
cleanlab's ``find_label_issues`` (confident learning, prune by noise rate)
run on the blended posterior ``(1 - t/2) p_i + (t/2) knn label distribution``
(``t`` the trust); the
highest-scoring ``round(noise_rate * N)`` points are flagged, i.e.
``threshold`` is the score of the last of them. A user ``threshold``
overrides it (``flagged = score >= threshold``).

``suggested_label`` is the argmax of that blended posterior (it equals the
given label for points that look fine) and ``suggested_confidence`` its
probability.

Public API: :func:`out_of_fold_proba`, :func:`cleanlab_flags`,
:func:`detect_mislabels` with :class:`MislabelResult` and
:class:`DetectorConfig`.
"""

from __future__ import annotations

from core.mislabel.detector import DetectorConfig, MislabelResult, detect_mislabels
from core.mislabel.oof import cleanlab_flags, out_of_fold_proba

__all__ = [
    "DetectorConfig",
    "MislabelResult",
    "cleanlab_flags",
    "detect_mislabels",
    "out_of_fold_proba",
]
