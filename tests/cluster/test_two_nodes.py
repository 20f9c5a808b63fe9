"""The README's two-machine recipe, on one machine: a head, and a second node that joins it
with ``ray start --address`` (both on 127.0.0.1, sharing the head's token).

A sharded ``hostcp select`` against the head needs both nodes' CPUs at once (one CPU each,
two shards) and writes the selection that the same shards write in this process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.cli import main
from core.cluster import LocalCluster

HOSTCP = str(Path(sys.executable).with_name("hostcp"))

pytestmark = pytest.mark.usefixtures("home")


def _nodes(head: LocalCluster) -> list[dict]:
    """The cluster's live nodes, read by a separate driver process (this one may be joined elsewhere)."""
    code = (f"import json, ray; ray.init(address={head.address!r}, logging_level='ERROR'); "
            "print(json.dumps([{'cpus': n['Resources'].get('CPU', 0)} for n in ray.nodes() if n['Alive']]))")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **head.env}, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_second_node_joins_and_a_sharded_select_runs_across_both(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 400)
    df = pd.DataFrame(rng.normal(0, 3, (3, 6))[y] + rng.normal(0, 1, (400, 6)), columns=list("abcdef"))
    df["label"] = np.array(["x", "y", "z"])[y]
    df.to_csv(tmp_path / "t.csv", index=False)
    args = ["select", str(tmp_path / "t.csv"), "--budget", "0.2", "--set", "epochs=1", "--shards", "2"]
    assert main([*args, "--out", str(tmp_path / "here")]) == 0
    with LocalCluster(num_cpus=1) as head, LocalCluster(num_cpus=1, join=head) as second:
        assert second.address == head.address
        assert sorted(n["cpus"] for n in _nodes(head)) == [1.0, 1.0]  # two nodes of one CPU each
        proc = subprocess.run([HOSTCP, *args, "--out", str(tmp_path / "two"), "--ray", head.address],
                              env={**os.environ, **head.env}, capture_output=True, text=True, timeout=400)
        assert proc.returncode == 0, proc.stderr
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "two" / "selection.csv"),
                                  pd.read_csv(tmp_path / "here" / "selection.csv"))
    assert not second.temp_dir.exists() and not head.temp_dir.exists()
