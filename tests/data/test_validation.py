"""A pool with its own validation file (core.data.validation): rows, split, messages."""

from __future__ import annotations

import io

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


def test_a_validation_file_may_hold_one_class_a_dataset_to_curate_may_not():
    from core.data.dataset import Dataset, check_curatable
    from core.data.validation import load_validation

    one = _table(12, "b")
    with pytest.raises(DataError, match="same label"):
        load_dataset(one)  # a pool of one class is refused at once, as before
    val = load_validation(one)
    assert val.n == 12 and val.class_names == ("b",)
    both, split = with_validation(load_dataset(_table(30, "ab")), val, test_fraction=0.25, seed=0)
    assert set(both.labels[split.val]) == {1} and len(split.val) + len(split.test) == 12
    npz = io.BytesIO()
    np.savez(npz, X=np.ones((5, 2), np.float32), y=np.array(["b"] * 5))
    assert load_validation(("v.npz", npz.getvalue())).class_names == ("b",)
    # the Dataset itself no longer refuses one class (a validation set is one), so the check before
    # any curation work does
    built = Dataset(name="one", ids=np.arange(4).astype(str), labels=np.zeros(4, np.int64),
                    class_names=("a",), features=np.ones((4, 2), np.float32))
    with pytest.raises(DataError, match="only one class \\('a'\\)"):
        check_curatable(built)


@pytest.mark.parametrize(("header", "row", "said"), [
    ("f1,f2,target", "{i},{j},{c}", "Choose 'target' as the validation set's label column."),
    ("word,f2,label", "{c},{j},{c}", "choose one of them as the validation set's label column if it holds"),
])
def test_a_label_column_error_names_the_validation_box_not_the_datasets(header, row, said):
    from core.data.tables import LabelColumnError
    from core.data.validation import load_validation

    rows = "".join(row.format(i=i, j=i % 3, c="ab"[i % 2]) + "\n" for i in range(8))
    table = ("v.csv", f"{header}\n{rows}".encode())
    with pytest.raises(LabelColumnError) as pool_error:
        load_dataset(table)
    assert said.replace("validation set's ", "") in str(pool_error.value)  # the dataset's own box
    with pytest.raises(LabelColumnError) as val_error:
        load_validation(table)
    assert said in str(val_error.value) and val_error.value.guess == pool_error.value.guess
    assert LabelColumnError.ROLE not in str(val_error.value)
