"""Selection methods behind one interface: HOST-CP and the baselines it is compared with.

``get_method(name, **config).fit(task).result``; ``available_methods()`` lists
the names (``hostcp``, ``random``, ``clean_random``, ``kcenter``,
``facility_location``, ``knn_shapley``, ``data_oob``).
"""

from __future__ import annotations

from core.valuation.base import (
    SelectionMethod,
    SelectionResult,
    SelectionTask,
    available_methods,
    get_method,
    register,
)

__all__ = [
    "SelectionTask",
    "SelectionResult",
    "SelectionMethod",
    "register",
    "get_method",
    "available_methods",
]
