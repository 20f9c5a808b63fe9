"""``hostcp curve`` and ``hostcp select`` with ``--ray``: same files as in this process, and the faults.

The commands run in subprocesses, as users run them, against the session's cluster
(with its token in their environment) or against a cluster of their own to kill.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.cli import main
from core.cluster import LocalCluster
from tests.cluster.faults import running_task_pids

HOSTCP = str(Path(sys.executable).with_name("hostcp"))


# a fresh HOSTCP_HOME per test (tests/conftest.py): the CLI stores its runs in the app's database there
pytestmark = pytest.mark.usefixtures("home")


@pytest.fixture(scope="module")
def csv_file(tmp_path_factory) -> Path:
    """A 3-class, 8-feature table of 300 rows with 10 % of labels flipped."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    x = rng.normal(0, 3, (3, 8))[y] + rng.normal(0, 1, (300, 8))
    y = np.where(rng.random(300) < 0.1, (y + 1) % 3, y)
    df = pd.DataFrame(x, columns=[f"f{i}" for i in range(8)])
    df["label"] = np.array(["ant", "bee", "cat"])[y]
    path = tmp_path_factory.mktemp("csv") / "table.csv"
    df.to_csv(path, index=False)
    return path


def _hostcp(args: list[str], cluster: LocalCluster | None, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HOSTCP_HOME": str(tmp_path / "home")}
    if cluster is not None:
        env.update(cluster.env)
    return subprocess.run([HOSTCP, *args], env=env, capture_output=True, text=True, timeout=400)


CURVE = ["--methods", "random,kcenter", "--budgets", "0.1,0.3", "--seeds", "2"]


def test_curve_on_ray_writes_the_curve_of_this_process(csv_file, tmp_path, ray_cluster, ray_executor):
    assert main(["curve", str(csv_file), "--out", str(tmp_path / "here"), *CURVE]) == 0
    proc = _hostcp(["curve", str(csv_file), "--out", str(tmp_path / "ray"), *CURVE, "--ray",
                    ray_cluster.address], ray_cluster, tmp_path)
    assert proc.returncode == 0, proc.stderr
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "ray" / "curve.csv"),
                                  pd.read_csv(tmp_path / "here" / "curve.csv"))


def test_select_on_ray_writes_the_selection_of_this_process(csv_file, tmp_path, ray_cluster, ray_executor):
    args = ["select", str(csv_file), "--budget", "0.2", "--set", "epochs=1"]
    assert main([*args, "--out", str(tmp_path / "here")]) == 0
    proc = _hostcp([*args, "--out", str(tmp_path / "ray"), "--ray", ray_cluster.address], ray_cluster,
                   tmp_path)
    assert proc.returncode == 0, proc.stderr
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "ray" / "selection.csv"),
                                  pd.read_csv(tmp_path / "here" / "selection.csv"))


def test_sharded_select_on_ray_writes_the_sharded_selection_of_this_process(csv_file, tmp_path, ray_cluster,
                                                                            ray_executor):
    args = ["select", str(csv_file), "--budget", "0.2", "--set", "epochs=1", "--shards", "2"]
    assert main([*args, "--out", str(tmp_path / "here")]) == 0
    proc = _hostcp([*args, "--out", str(tmp_path / "ray"), "--ray", ray_cluster.address], ray_cluster,
                   tmp_path)
    assert proc.returncode == 0, proc.stderr
    ray_table = pd.read_csv(tmp_path / "ray" / "selection.csv")
    pd.testing.assert_frame_equal(ray_table, pd.read_csv(tmp_path / "here" / "selection.csv"))
    assert ray_table["selected"].sum() == 48  # 20 % of the 240 candidates left by the 20 % held out


def test_shards_for_a_method_that_has_none_is_one_line(csv_file, tmp_path, capsys):
    assert main(["select", str(csv_file), "--out", str(tmp_path / "o"), "--method", "kcenter",
                 "--shards", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Only HOST-CP runs in shards" in err[0], err


def test_an_address_where_nothing_listens_fails_at_once_with_one_line(csv_file, tmp_path):
    t0 = time.monotonic()
    proc = _hostcp(["curve", str(csv_file), "--out", str(tmp_path / "o"), "--ray", "127.0.0.1:9"], None,
                   tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "No Ray cluster answers at 127.0.0.1:9" in lines[0], proc.stderr
    assert time.monotonic() - t0 < 60  # ray.init alone would wait minutes


def _ray_dirs() -> set[str]:
    return {p.name for p in Path("/tmp").glob("hcp-ray-*")}


def test_ray_local_starts_a_cluster_for_the_command_and_stops_it(csv_file, tmp_path):
    before = _ray_dirs()
    proc = _hostcp(["curve", str(csv_file), "--out", str(tmp_path / "o"), "--methods", "random",
                    "--budgets", "0.2", "--seeds", "1", "--ray", "local"], None, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert len(pd.read_csv(tmp_path / "o" / "curve.csv")) == 2  # full + random at 20 %
    assert _ray_dirs() <= before  # its temporary directory (and token) is gone
    assert not any(b"hcp-ray-" in c and not any(d.encode() in c for d in before) for c in _cmdlines())


def _cmdlines() -> list[bytes]:
    out = []
    for p in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            out.append(p.read_bytes())
        except OSError:
            continue
    return out


def test_a_cluster_that_goes_away_fails_the_job_with_one_line(csv_file, tmp_path, ray_executor):
    with LocalCluster(num_cpus=1) as cluster:
        job = subprocess.Popen(
            [HOSTCP, "curve", str(csv_file), "--out", str(tmp_path / "o"), "--methods", "hostcp",
             "--budgets", "0.1,0.2,0.3", "--seeds", "3", "--ray", cluster.address],
            env={**os.environ, "HOSTCP_HOME": str(tmp_path / "home"), **cluster.env},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        deadline = time.monotonic() + 120
        while not running_task_pids() and time.monotonic() < deadline and job.poll() is None:
            time.sleep(0.1)
        assert running_task_pids(), "the curve never started a task"
        os.killpg(cluster._proc.pid, signal.SIGKILL)  # the whole cluster at once, as a lost machine
        t_kill = time.monotonic()
        _, err = job.communicate(timeout=120)
    assert job.returncode == 2, err
    assert time.monotonic() - t_kill < 60  # not Ray's own 60 s GCS timeout, which ends the process
    last = err.strip().splitlines()[-1]
    assert last.startswith("hostcp curve: error: The Ray cluster at ") and "run the job again" in last, err
