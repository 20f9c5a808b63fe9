"""A pool with its own validation file (core.data.validation): rows, split, messages."""

from __future__ import annotations

import numpy as np
import pytest

from core.data import load_dataset
from core.data.validation import with_validation
from core.errors import DataError


def _table(n: int, classes: str, *, columns: str = "f1,f2") -> tuple[str, bytes]:
    rows = "".join(f"{i},{i % 7},{classes[i % len(classes)]}\n" for i in range(n))
    return "t.csv", f"{columns},label\n{rows}".encode()


def test_the_validation_rows_split_per_class_into_validation_and_test():
    pool, val = load_dataset(_table(30, "abc")), load_dataset(_table(21, "abc"))
    both, split = with_validation(pool, val, test_fraction=0.5, seed=3)
    assert both.n == 51 and list(split.train) == list(range(30))
    assert sorted([*split.val, *split.test]) == list(range(30, 51))
    for c in range(3):  # 7 a class: at least one stays for validation, about half goes to test
        in_val = np.sum(both.labels[split.val] == c)
        assert in_val >= 1 and 3 <= np.sum(both.labels[split.test] == c) <= 4
    again = with_validation(pool, val, test_fraction=0.5, seed=3)[1]
    np.testing.assert_array_equal(again.test, split.test)  # seeded
    _, cli = with_validation(pool, val)  # the CLI's --val: all of it validates, no test split
    assert len(cli.val) == 21 and len(cli.test) == 0


def test_a_mismatched_validation_set_is_named_in_the_callers_words():
    pool = load_dataset(_table(30, "ab"))
    with pytest.raises(DataError, match="VAL's feature columns are not DATA's"):
        with_validation(pool, load_dataset(_table(10, "ab", columns="f1,x")))
    with pytest.raises(DataError, match="the validation file has classes that the dataset lacks: \\['z'\\]"):
        with_validation(pool, load_dataset(_table(10, "az")), names=("the dataset", "the validation file"))
