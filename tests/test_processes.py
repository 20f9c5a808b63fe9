"""No engine code forks its host process, and detection never hangs in a server-like process.

The host here is a real child process set up like the Streamlit server: a SIGTERM handler
that does not exit (Streamlit's asks the server to stop), more than one CPU visible, and the
job runner the app uses. A fork from it would hand the handler to pool workers that then never
exit (see core.processes).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SERVER_LIKE = textwrap.dedent(
    """
    import json, os, signal, sys, threading
    from pathlib import Path

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())  # like Streamlit's: does not exit

    import numpy as np
    from sklearn.datasets import load_breast_cancer

    from core.data.dataset import Dataset
    from core.jobs import JobRunner
    from core.pipeline import detect, import_dataset
    from core.processes import fork_count
    from core.store import Store

    x, y = load_breast_cancer(return_X_y=True)
    rng = np.random.default_rng(0)
    flip = rng.random(len(y)) < 0.2
    y = np.where(flip, 1 - y, y).astype(np.int64)
    data = Dataset(name="bc", ids=np.array([f"r{i}" for i in range(len(y))]), labels=y,
                   class_names=("0", "1"), features=x.astype(np.float32))
    store = Store(Path(os.environ["HOSTCP_HOME"]) / "hostcp.sqlite")
    did = import_dataset(store, data)
    runner = JobRunner(store)
    statuses = []
    for i in range(int(sys.argv[1])):
        job = runner.submit("mislabels", lambda r, i=i: {"id": detect(store, did, seed=i, reporter=r)},
                            dataset_id=did)
        statuses.append(runner.wait(job, timeout=120).status)
    print(json.dumps({"statuses": statuses, "forks": fork_count(),
                      "cpus": len(os.sched_getaffinity(0))}), flush=True)
    while not stop.wait(0.1):  # serve until SIGTERM, then return normally
        pass
    """
)


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="needs Linux CPU affinity")
def test_detection_ten_times_in_a_server_like_process_finishes_and_forks_nothing(tmp_path):
    env = {**os.environ, "HOSTCP_HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER_LIKE, "10"], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line, proc.stderr.read()[-3000:]
        report = json.loads(line)
        assert report["cpus"] > 1 or os.cpu_count() == 1
        assert report["statuses"] == ["done"] * 10
        assert report["forks"] == 0  # cleanlab's default forked a pool of every CPU here
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0  # and the process still stops on SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_forks_are_counted():
    from core.processes import fork_count

    before = fork_count()
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    assert fork_count() == before + 1
