"""Runs, mislabel scores and cached artefacts of a dataset (a mixin of Store)."""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import pandas as pd

from core.errors import StoreError
from core.files import atomic_write
from core.store.records import (
    ReviewStamp,
    RunRecord,
    utcnow,
)


class ResultsMixin:
    """Per-example results and artefacts; needs ``connect`` and ``_dataset_row`` from Store."""

    # -------------------------------------------------------------------- runs
    def add_run(
        self,
        dataset_id: int,
        *,
        method: str,
        budget: float,
        seed: int,
        settings: dict,
        selected: np.ndarray,
        value: np.ndarray,
        info: dict | None = None,
        labels_revision: int | None = None,
    ) -> int:
        """Store a finished run with one row per dataset example, in one transaction."""
        selected = np.asarray(selected, dtype=bool)
        value = np.asarray(value, dtype=float)
        rev = self.labels_revision(dataset_id) if labels_revision is None else labels_revision
        with self.connect() as conn:
            n = self._dataset_row(conn, dataset_id)["n"]
            if len(selected) != n or len(value) != n:
                raise StoreError(f"A run needs {n} rows; got {len(selected)} and {len(value)}.")
            cur = conn.execute(
                "INSERT INTO runs(dataset_id, method, budget, seed, settings, info,"
                " labels_revision, created_at) VALUES (?,?,?,?,?,?,?,?)",
                (
                    dataset_id,
                    method,
                    float(budget),
                    int(seed),
                    json.dumps(settings, default=str),
                    json.dumps(info or {}, default=str),
                    rev,
                    utcnow(),
                ),
            )
            run_id = int(cur.lastrowid)
            conn.executemany(
                "INSERT INTO run_examples(run_id, example_index, selected, value) VALUES (?,?,?,?)",
                (
                    (run_id, i, int(s), None if np.isnan(v) else float(v))
                    for i, (s, v) in enumerate(zip(selected, value, strict=True))
                ),
            )
        return run_id

    def get_run(self, run_id: int) -> RunRecord:
        """A stored run with its per-example arrays."""
        with self.connect() as conn:
            row = conn.execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()
            if row is None:
                raise StoreError(f"No run with id {run_id} in {self.path}.")
            ex = conn.execute(
                "SELECT selected, value FROM run_examples WHERE run_id=? ORDER BY example_index",
                (run_id,),
            ).fetchall()
        arr = np.array([(e[0], np.nan if e[1] is None else e[1]) for e in ex], dtype=float).reshape(-1, 2)
        return RunRecord(
            id=row["id"],
            dataset_id=row["dataset_id"],
            method=row["method"],
            budget=row["budget"],
            seed=row["seed"],
            settings=json.loads(row["settings"]),
            info=json.loads(row["info"]),
            labels_revision=row["labels_revision"],
            created_at=row["created_at"],
            selected=arr[:, 0].astype(bool),
            value=arr[:, 1],
        )

    def list_runs(self, dataset_id: int) -> list[dict[str, Any]]:
        """Runs of a dataset, newest first, as plain dicts (no per-example arrays)."""
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT * FROM runs WHERE dataset_id=? ORDER BY id DESC", (dataset_id,)
            ).fetchall()
        return [
            {**dict(r), "settings": json.loads(r["settings"]), "info": json.loads(r["info"])} for r in rows
        ]

    def latest_run(self, dataset_id: int, method: str | None = None) -> RunRecord | None:
        """The newest run of a dataset (optionally of one method), or ``None``."""
        runs = [r for r in self.list_runs(dataset_id) if method is None or r["method"] == method]
        return self.get_run(runs[0]["id"]) if runs else None

    def review_stamp(self, dataset_id: int) -> ReviewStamp:
        """The dataset's :class:`ReviewStamp` (creation time, labels revision, newest mislabel
        result and run), in one read; raises StoreError when there is no such dataset."""
        with self.connect() as conn:
            row = conn.execute(
                "SELECT created_at,"
                " (SELECT COALESCE(MAX(id), 0) FROM decisions WHERE dataset_id=d.id),"
                " (SELECT COALESCE(MAX(id), 0) FROM mislabel_results WHERE dataset_id=d.id),"
                " (SELECT COALESCE(MAX(id), 0) FROM runs WHERE dataset_id=d.id)"
                " FROM datasets d WHERE d.id=?",
                (dataset_id,),
            ).fetchone()
        if row is None:
            raise StoreError(f"No dataset with id {dataset_id} in {self.path}.")
        return ReviewStamp(str(row[0]), int(row[1]), int(row[2]), int(row[3]))

    # --------------------------------------------------------------- mislabels
    def add_mislabel_result(
        self,
        dataset_id: int,
        *,
        score: np.ndarray,
        flagged: np.ndarray,
        suggested_label: np.ndarray,
        suggested_confidence: np.ndarray,
        noise_rate: float,
        threshold: float,
        settings: dict | None = None,
        labels_revision: int | None = None,
    ) -> int:
        """Store per-example mislabel scores (one row per dataset example)."""
        rev = self.labels_revision(dataset_id) if labels_revision is None else labels_revision
        with self.connect() as conn:
            n = self._dataset_row(conn, dataset_id)["n"]
            if not len(score) == len(flagged) == len(suggested_label) == len(suggested_confidence) == n:
                raise StoreError(f"Mislabel results need {n} rows per array.")
            cur = conn.execute(
                "INSERT INTO mislabel_results(dataset_id, noise_rate, threshold, settings,"
                " labels_revision, created_at) VALUES (?,?,?,?,?,?)",
                (
                    dataset_id,
                    float(noise_rate),
                    float(threshold),
                    json.dumps(settings or {}, default=str),
                    rev,
                    utcnow(),
                ),
            )
            rid = int(cur.lastrowid)
            conn.executemany(
                "INSERT INTO mislabel_examples VALUES (?,?,?,?,?,?)",
                (
                    (rid, i, float(s), int(f), int(sl), float(sc))
                    for i, (s, f, sl, sc) in enumerate(
                        zip(score, flagged, suggested_label, suggested_confidence, strict=True)
                    )
                ),
            )
        return rid

    def latest_mislabels(self, dataset_id: int) -> pd.DataFrame | None:
        """Newest mislabel scores as a DataFrame indexed by example, or ``None``.

        Columns: score, flagged (bool), suggested_label, suggested_confidence;
        ``df.attrs`` holds noise_rate, threshold, labels_revision, result_id.
        """
        with self.connect() as conn:
            row = conn.execute(
                "SELECT * FROM mislabel_results WHERE dataset_id=? ORDER BY id DESC LIMIT 1",
                (dataset_id,),
            ).fetchone()
            if row is None:
                return None
            ex = conn.execute(
                "SELECT example_index, score, flagged, suggested_label, suggested_confidence"
                " FROM mislabel_examples WHERE result_id=? ORDER BY example_index",
                (row["id"],),
            ).fetchall()
        df = pd.DataFrame(
            [tuple(e) for e in ex],
            columns=["example_index", "score", "flagged", "suggested_label", "suggested_confidence"],
        ).set_index("example_index")
        df["flagged"] = df["flagged"].astype(bool)
        df.attrs.update(
            noise_rate=row["noise_rate"],
            threshold=row["threshold"],
            labels_revision=row["labels_revision"],
            result_id=row["id"],
            settings=json.loads(row["settings"]),
        )
        return df

    # --------------------------------------------------------------- artefacts
    def put_artifact(self, dataset_id: int, kind: str, key: str, array: np.ndarray) -> None:
        """Cache an array (embedding, UMAP layout...) under ``(kind, key)``."""
        fname = self.save_array(f"{kind}-{dataset_id}-{os.urandom(6).hex()}", array)
        with self.connect() as conn:
            old = conn.execute(
                "SELECT file FROM artifacts WHERE dataset_id=? AND kind=? AND key=?",
                (dataset_id, kind, key),
            ).fetchone()
            conn.execute(
                "INSERT OR REPLACE INTO artifacts(dataset_id, kind, key, file, created_at)"
                " VALUES (?,?,?,?,?)",
                (dataset_id, kind, key, fname, utcnow()),
            )
        if old is not None and old["file"] != fname:
            self._file(old["file"]).unlink(missing_ok=True)

    def get_artifact(self, dataset_id: int, kind: str, key: str) -> np.ndarray | None:
        """A cached array, or ``None`` when absent."""
        with self.connect() as conn:
            row = conn.execute(
                "SELECT file FROM artifacts WHERE dataset_id=? AND kind=? AND key=?",
                (dataset_id, kind, key),
            ).fetchone()
        if row is None or not self._file(row["file"]).exists():
            return None
        return self.load_array(row["file"])

    def put_table(self, dataset_id: int, kind: str, key: str, table: pd.DataFrame) -> None:
        """Cache a small table (a value curve) as JSON in an artefact file."""
        payload = table.to_json(orient="split", double_precision=15).encode()
        fname = f"{kind}-{dataset_id}-{os.urandom(6).hex()}.json"
        atomic_write(self._file(fname), lambda fh: fh.write(payload))
        with self.connect() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO artifacts(dataset_id, kind, key, file, created_at)"
                " VALUES (?,?,?,?,?)",
                (dataset_id, kind, key, fname, utcnow()),
            )

    def get_table(self, dataset_id: int, kind: str, key: str | None = None) -> pd.DataFrame | None:
        """A cached table (the newest of that kind when ``key`` is None), or ``None``."""
        with self.connect() as conn:
            if key is None:
                row = conn.execute(
                    "SELECT file FROM artifacts WHERE dataset_id=? AND kind=?"
                    " ORDER BY created_at DESC LIMIT 1",
                    (dataset_id, kind),
                ).fetchone()
            else:
                row = conn.execute(
                    "SELECT file FROM artifacts WHERE dataset_id=? AND kind=? AND key=?",
                    (dataset_id, kind, key),
                ).fetchone()
        if row is None or not self._file(row["file"]).exists():
            return None
        from io import StringIO

        return pd.read_json(StringIO(self._file(row["file"]).read_text()), orient="split", precise_float=True)
