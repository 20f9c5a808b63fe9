"""Drop suspected mislabels, then stratified random: the strongest simple baseline."""

from __future__ import annotations

from core.progress import Reporter
from core.valuation.base import SelectionMethod, SelectionTask, SelectOutput, register
from core.valuation.random import stratified_random

__all__ = ["CleanRandomSelector"]


@register("clean_random", "Drop flagged, then random")
class CleanRandomSelector(SelectionMethod):
    """Stratified random among the unflagged candidates.

    Uses ``task.flagged`` when given (the same flags HOST-CP honours); otherwise
    cleanlab's flags on out-of-fold predictions (``core.mislabel.cleanlab_flags``).
    """

    def _select(self, task: SelectionTask, reporter: Reporter) -> SelectOutput:
        if task.flagged is not None:
            flagged, source = task.flagged, "task"
        else:
            from core.mislabel import cleanlab_flags

            flagged = cleanlab_flags(task.x_train, task.y_train, n_classes=task.n_classes, seed=task.seed)
            source = "cleanlab"
        sel, scores = stratified_random(
            task.y_train, task.k, n_classes=task.n_classes, seed=task.seed, allowed=~flagged
        )
        return sel, scores, {"n_flagged": int(flagged.sum()), "flag_source": source}
