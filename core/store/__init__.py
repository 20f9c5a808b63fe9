"""The project store: a SQLite database file (WAL) plus array files beside it.

See :mod:`core.store.database` for what is stored and how writes stay atomic.
"""

from __future__ import annotations

from core.store.database import Store
from core.store.records import (
    DatasetInfo,
    Decision,
    JobRecord,
    ReviewStamp,
    RunRecord,
    default_store_path,
    utcnow,
)
from core.store.review_log import StaleDecisionError, decisions_in_force, example_revisions
from core.store.schema import DECISION_ACTIONS, SCHEMA_VERSION

__all__ = [
    "Store",
    "DatasetInfo",
    "RunRecord",
    "ReviewStamp",
    "Decision",
    "StaleDecisionError",
    "example_revisions",
    "decisions_in_force",
    "JobRecord",
    "DECISION_ACTIONS",
    "SCHEMA_VERSION",
    "default_store_path",
    "utcnow",
]
