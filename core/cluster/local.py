"""A Ray cluster of this machine, started and stopped by the project (``--ray local``, tests).

``ray start --head --block`` bound to 127.0.0.1 with ports of its own and a temporary
directory of its own, so it never meets another Ray instance on the machine, and
stopping it (SIGTERM to the blocking ``ray start``, which drains and stops the
processes it started) leaves nothing behind. ``ray stop`` is never used: it stops
every Ray process of the user, a cluster of theirs included.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core.errors import ClusterError

__all__ = ["LocalCluster"]

log = logging.getLogger(__name__)

#: Seconds a head gets to come up (a few on this machine; more when it is loaded).
START_TIMEOUT_S = 90.0


def _free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports free on 127.0.0.1 right now (from the ephemeral range)."""
    socks, ports = [], []
    try:
        while len(ports) < n:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


#: Worker ports come from below the ephemeral range (32768-60999 on Linux), where the
#: node's own ports and Ray's "random" ones are drawn, so the two never overlap (they did,
#: now and then: Ray refuses to start when a single port lies inside the worker range).
WORKER_PORTS = range(10_000, 32_000)
#: Worker ports a node may open (Ray's --min/--max-worker-port, inclusive).
WORKERS_PER_NODE = 200
_claimed_worker_ports: set[int] = set()  # ranges handed out in this process (head and joiners)


def _free_worker_range() -> int:
    """First port of ``WORKERS_PER_NODE + 1`` consecutive ports free now and not handed out."""
    rng = secrets.SystemRandom()
    width = WORKERS_PER_NODE + 1
    for _ in range(50):
        start = rng.randrange(WORKER_PORTS.start, WORKER_PORTS.stop - width)
        block = range(start, start + width)
        if _claimed_worker_ports.intersection(block) or not all(_is_free(p) for p in block):
            continue
        _claimed_worker_ports.update(block)
        return start
    raise ClusterError(f"no {width} consecutive free ports for Ray's workers in "
                       f"{WORKER_PORTS.start}-{WORKER_PORTS.stop}")


def _is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class LocalCluster:
    """A Ray node on 127.0.0.1: a new cluster's head, or (``join``) a second node of one.

    Use as a context manager or call :meth:`stop`. A joining node is what ``ray start
    --address`` on a second machine is; it shares the head's token.

    Args:
        num_cpus: CPUs the node offers to tasks.
        temp_root: Where its temporary directory goes (short: Ray's socket paths must fit 107 bytes).
        join: The head to join instead of starting a cluster.
    """

    def __init__(
        self, num_cpus: int = 2, *, temp_root: str | None = None, join: LocalCluster | None = None
    ) -> None:
        self.num_cpus = int(num_cpus)
        self.temp_dir = Path(tempfile.mkdtemp(prefix="hcp-ray-", dir=temp_root or "/tmp"))
        port, node, obj, agent, grpc, metrics, renv = _free_ports(7)
        wmin = _free_worker_range()
        self._worker_ports = range(wmin, wmin + WORKERS_PER_NODE + 1)
        self.port = join.port if join is not None else port
        self.address = f"127.0.0.1:{self.port}"
        ray_bin = Path(sys.executable).with_name("ray")
        role = ["--address", join.address] if join is not None else ["--head", "--port", str(port)]
        cmd = [
            str(ray_bin) if ray_bin.exists() else "ray", "start", *role, "--block",
            "--node-ip-address", "127.0.0.1",
            "--node-manager-port", str(node), "--object-manager-port", str(obj),
            "--dashboard-agent-listen-port", str(agent),
            "--dashboard-agent-grpc-port", str(grpc), "--metrics-export-port", str(metrics),
            "--runtime-env-agent-port", str(renv),
            "--min-worker-port", str(wmin), "--max-worker-port", str(wmin + WORKERS_PER_NODE),
            "--num-cpus", str(self.num_cpus), "--disable-usage-stats",
        ]
        if join is None:  # a joining node takes these from its head
            cmd += ["--include-dashboard", "false", "--temp-dir", str(self.temp_dir)]
        self.log_path = self.temp_dir / "ray-start.log"
        token_path = self.temp_dir / "auth_token"
        fd = os.open(token_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(join.env_token() if join is not None else secrets.token_hex(32))
        #: What a driver's environment needs to join this cluster (see :meth:`driver_env`).
        self.env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_path)}
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **self.env}
        env.pop("RAY_AUTH_TOKEN", None)
        with open(self.log_path, "wb") as logf:
            # its own session: stopping it never signals the caller's process group
            self._proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env,
                                          start_new_session=True)
        try:
            self._wait_started()
        except BaseException:
            self.stop()
            raise

    def _wait_started(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise ClusterError(f"Ray did not start (ray start exited with {self._proc.returncode}): "
                                   f"{self._log_tail()}")
            if b"block forever" in self.log_path.read_bytes():
                return
            time.sleep(0.2)
        raise ClusterError(f"Ray did not start within {START_TIMEOUT_S:.0f} s: {self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(lines[-3:])[-400:]

    def env_token(self) -> str:
        """The cluster's authentication token (what a second machine's node is given)."""
        return Path(self.env["RAY_AUTH_TOKEN_PATH"]).read_text()

    @contextmanager
    def driver_env(self) -> Iterator[None]:
        """This process's environment set to join the cluster (its token) while the block runs."""
        saved = {k: os.environ.get(k) for k in (*self.env, "RAY_AUTH_TOKEN")}
        os.environ.pop("RAY_AUTH_TOKEN", None)
        os.environ.update(self.env)
        try:
            yield
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    @property
    def running(self) -> bool:
        return self._proc.poll() is None

    def stop(self, timeout: float = 40.0) -> None:
        """Stop the node and every process it started, then remove its temporary directory."""
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)  # ray start drains, then stops its processes
            try:
                self._proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log.warning("ray start did not stop in %.0f s; killing its process group", timeout)
        try:  # anything of its session still alive (a worker that ignored SIGTERM)
            os.killpg(self._proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self._proc.wait()
        _claimed_worker_ports.difference_update(self._worker_ports)
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
